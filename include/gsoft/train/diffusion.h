#pragma once
// Pretraining of a text-to-image pipeline (text encoder and UNet together) on captioned
// Fashion-MNIST scenes: epsilon-prediction MSE at uniform timesteps, AdamW with linear warm-up and
// cosine decay to 10%, gradient clipping, and an exponential moving average of every weight
// (decay min(ema_decay, (1 + step) / (10 + step)), as diffusers' EMAModel), which is what the
// saved pipeline holds.
//
// Each step's scenes, captions, noise and timesteps are drawn from (seed, step) alone, so a run
// resumed from out_dir/checkpoint.safetensors (weights, EMA, AdamW moments, step) repeats the
// uninterrupted run exactly. out_dir holds checkpoint.safetensors, metrics.jsonl and pipeline/
// (the EMA weights, replaced as a whole at each checkpoint).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gsoft/data/fashion_scenes.h"
#include "gsoft/data/images.h"
#include "gsoft/diffusion/pipeline.h"
#include "gsoft/train/trainer.h"

namespace gsoft {

struct DiffusionPretrainOptions {
  int64_t max_steps = 5000;    // the length of the schedule
  int64_t stop_at_step = 0;    // end the run after this step (0: at max_steps)
  int64_t batch_size = 64;
  double lr = 1e-3;
  double weight_decay = 0.01;
  int64_t warmup_steps = 200;
  double max_grad_norm = 1.0;
  double ema_decay = 0.999;
  double small_probability = 0.5;     // of a scene's item being small (else large)
  double negative_probability = 0.25;
  data::CaptionDropout dropout;
  int64_t log_every = 20;
  int64_t checkpoint_every = 250;
  uint64_t seed = 0;
  std::string out_dir;
  bool resume = true;
  // Data-parallel training (not owned; null: this process alone): each rank takes its share of
  // every step's scenes (drawn and noised as one batch), gradients are summed, rank 0 writes.
  dist::Group* group = nullptr;
};

// The scenes of one step: canvases (B, 32, 32) uint8 and their captions.
struct SceneBatch {
  torch::Tensor canvases;
  std::vector<std::string> captions;
  std::vector<data::Scene> scenes;
};
// Draws `batch_size` items of `items` ((N, 1, 28, 28) uint8, labels 0-9) and their attributes from
// (seed, step) alone.
SceneBatch draw_scene_batch(const data::ImageDataset& items, int64_t batch_size, uint64_t seed, int64_t step,
                            double small_probability, double negative_probability, const data::CaptionDropout& dropout);

struct DiffusionPretrainResult {
  bool interrupted = false;
  int64_t start_step = 0, end_step = 0, total_steps = 0;
  std::vector<double> losses;  // this call's steps
  double train_seconds = 0;
};

// on_checkpoint(step, pipeline with the EMA weights) runs after each checkpoint (e.g. to write a
// sample grid). Throws std::runtime_error on a non-finite loss (the last checkpoint is kept) and
// std::invalid_argument for a checkpoint written with other options.
DiffusionPretrainResult pretrain_diffusion(diffusion::Pipeline& pipeline, const data::ImageDataset& items,
                                           const DiffusionPretrainOptions& options, const TrainCallbacks& callbacks = {},
                                           const std::function<void(int64_t, diffusion::Pipeline&)>& on_checkpoint = {});

// Swaps the EMA tensors ("ema.<parameter>") of a checkpoint into the pipeline's parameters.
void load_ema_weights(diffusion::Pipeline& pipeline, const std::string& checkpoint);

}  // namespace gsoft
