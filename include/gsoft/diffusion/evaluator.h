#pragma once
// Measuring generated scenes: a small CNN that tells the Fashion-MNIST class of a 32x32 scene
// (trained here on compositions of the training set, every size, quadrant and polarity), and the
// evaluation of a pipeline on a fixed prompt set: class accuracy by the CNN, attributes (size,
// quadrant, negative) by the pixel rules of data::measure_attributes.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gsoft/data/fashion_scenes.h"
#include "gsoft/data/images.h"
#include "gsoft/diffusion/pipeline.h"
#include "gsoft/io/png.h"
#include "gsoft/train/trainer.h"

namespace gsoft::diffusion {

// Scenes are first brought to one form by the pixel rules (data::canonical_scenes: positive, a
// small item's quadrant enlarged), then conv(1,32) conv(32,32) pool | conv(32,64) conv(64,64) pool |
// conv(64,128) pool | fc 2048->256 (the features) | fc 256->10, ReLU after each convolution and the
// first fc.
class SceneClassifierImpl : public torch::nn::Module {
 public:
  SceneClassifierImpl();
  // canvases: (B, 32, 32) or (B, 1, 32, 32) uint8 -> (B, 256) penultimate features.
  torch::Tensor features(const torch::Tensor& canvases);
  torch::Tensor forward(const torch::Tensor& canvases);  // (B, 10) logits

 private:
  torch::nn::Sequential body_{nullptr};
  torch::nn::Linear fc_{nullptr}, out_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(SceneClassifier);

struct ClassifierTrainOptions {
  int64_t steps = 3000;
  int64_t batch_size = 128;
  double lr = 2e-3;
  uint64_t seed = 0;
  int64_t log_every = 100;
};

// AdamW with cosine decay on freshly drawn scenes of `train` (each step's from (seed, step)).
void train_scene_classifier(SceneClassifierImpl& model, const data::ImageDataset& train, const ClassifierTrainOptions& o,
                            const TrainCallbacks& callbacks = {});

struct SceneAccuracy {
  int64_t images = 0;
  double class_accuracy = 0;      // the classifier's label == the prompt's
  double attribute_accuracy = 0;  // every attribute the prompt states matches the pixel rules
  double joint_accuracy = 0;      // the class and every stated attribute right
  std::map<std::string, double> per_attribute;  // "size", "position", "negative": share correct where stated
};

// Scores canvases (N, 32, 32) or (N, 1, 32, 32) uint8 against the prompts they were made for.
SceneAccuracy score_scenes(SceneClassifierImpl& classifier, const torch::Tensor& canvases,
                           const std::vector<data::Prompt>& prompts);

// Real compositions of `items` for `prompts` (the ceiling of score_scenes), one item per prompt
// drawn from the items of that class by `seed`.
torch::Tensor compose_for_prompts(const data::ImageDataset& items, const std::vector<data::Prompt>& prompts, uint64_t seed);

// The fixed evaluation prompts: every class x {large, small in each quadrant, large negative}.
std::vector<data::Prompt> evaluation_prompts();

// Subject fidelity, the analogue of the paper's CLIP-I: the mean cosine similarity between the
// evaluator's features of each image and of each subject view (every pair); and an instance-level
// number that tells one item from others of its class: for each image, the best normalised
// cross-correlation of its centre 28x28 crop with a view's, averaged over the images.
struct SubjectSimilarity {
  double feature_cosine = 0;
  double ncc = 0;
};
SubjectSimilarity subject_similarity(SceneClassifierImpl& classifier, const torch::Tensor& images, const torch::Tensor& views);

// Prompt fidelity's prompts for a subject (the CLIP-T analogue): small in each quadrant, large
// negative, small at the top left negative, each with the subject token.
std::vector<data::Prompt> contextual_prompts(int64_t label, const std::string& token);

// How a fine-tuned pipeline draws one subject (paper §6.2 measured on scenes): images for the base
// prompt "a photo of a large <token> <class>" against the subject's views (subject fidelity), and
// images for the contextual prompts scored by class and attributes (prompt fidelity: the share
// with the class and every attribute right).
struct SubjectEvalOptions {
  int64_t base_images = 8;     // for the base prompt
  int64_t context_images = 4;  // per contextual prompt
  int64_t steps = 50;
  double guidance = 5.0;
  int64_t batch_size = 32;
  uint64_t seed = 0;
};
struct SubjectEval {
  SubjectSimilarity similarity;
  SceneAccuracy base_prompt;   // class and attributes of the base-prompt images
  SceneAccuracy contextual;
  double prompt_fidelity = 0;  // contextual.joint_accuracy
  torch::Tensor base_images, context_images;  // uint8 (N, 1, 32, 32)
};
SubjectEval evaluate_subject(Pipeline& pipeline, SceneClassifierImpl& classifier, const torch::Tensor& views, int64_t label,
                             const std::string& token, const SubjectEvalOptions& options);

// model.safetensors + config.json in `dir` (written atomically) and back; load checks every tensor.
void save_scene_classifier(SceneClassifierImpl& model, const std::string& dir, const nlohmann::json& info);
SceneClassifier load_scene_classifier(const std::string& dir);

// uint8 images (N, 1, H, W) -> one grid image, `columns` wide, 2-pixel grey gutters.
io::GrayImage image_grid(const torch::Tensor& images, int64_t columns);

}  // namespace gsoft::diffusion
