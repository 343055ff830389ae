#pragma once
// A text-to-image diffusion pipeline in diffusers' folder layout, in pixel space (no VAE):
//
//   model_index.json                 {"_class_name": "GSoftPixelDiffusionPipeline", "unet": [...], ...}
//   unet/config.json                 UNet2DConditionModel sizes
//   unet/diffusion_pytorch_model.safetensors
//   text_encoder/config.json         a BertModel (its last hidden states feed cross-attention)
//   text_encoder/model.safetensors
//   tokenizer/tokenizer.json         + tokenizer_config.json (model_max_length: prompt tokens)
//   scheduler/scheduler_config.json  DDIMScheduler / DDPMScheduler
//
// Prompts are padded to model_max_length and the UNet attends to every position, padding
// included, as Stable Diffusion does with CLIP. Sampling is DDIM with classifier-free guidance:
// eps = eps(uncond) + guidance * (eps(prompt) - eps(uncond)), the unconditional prompt being "".
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gsoft/diffusion/scheduler.h"
#include "gsoft/diffusion/unet.h"
#include "gsoft/models/encoder.h"
#include "gsoft/text/tokenizer.h"

namespace gsoft::diffusion {

constexpr const char* kUNetWeightsFile = "diffusion_pytorch_model.safetensors";

struct Pipeline {
  UNet2DConditionModel unet{nullptr};
  EncoderModel text_encoder{nullptr};
  std::optional<Tokenizer> tokenizer;
  std::string tokenizer_json;  // the tokenizer's file, written back unchanged by save()
  SchedulerConfig scheduler;
  int64_t max_prompt_tokens = 16;

  // Random weights (Hugging Face's initialisation for the text encoder), for pretraining.
  static Pipeline create(const UNetConfig& unet, const EncoderConfig& text_encoder, const std::string& tokenizer_json,
                         const SchedulerConfig& scheduler, int64_t max_prompt_tokens, uint64_t seed);
  // Throws std::runtime_error naming the file for a missing part, a missing or misshaped tensor
  // (expected and found shapes), a tensor the model does not have, or a component it does not
  // support (a VAE: this pipeline works in pixel space).
  static Pipeline load(const std::string& dir);
  // Writes every file (each atomically) into `dir`, which is created.
  void save(const std::string& dir) const;

  // (B, max_prompt_tokens, hidden) last hidden states of the text encoder.
  torch::Tensor encode_prompts(const std::vector<std::string>& prompts) const;
  // The token ids and attention mask of the prompts, padded to max_prompt_tokens.
  std::pair<torch::Tensor, torch::Tensor> tokenize_prompts(const std::vector<std::string>& prompts) const;

  int64_t image_channels() const { return unet->config.in_channels; }
  int64_t image_size() const { return unet->config.sample_size; }
};

struct SampleOptions {
  int64_t steps = 50;
  double guidance = 5.0;   // 1: no guidance (one UNet pass per step)
  int64_t batch_size = 32;  // images denoised together
  // Called after each DDIM step of each batch: (images done before this batch, step, steps).
  std::function<void(int64_t, int64_t, int64_t)> on_step;
};

// One image per (prompt, seed) pair, in order; image i starts from noise drawn from seeds[i]
// alone, so an image does not depend on what else is in the batch. Returns (N, C, H, W) floats
// in [-1, 1], in eval mode and without gradients.
torch::Tensor sample_images(Pipeline& pipeline, const std::vector<std::string>& prompts, const std::vector<uint64_t>& seeds,
                            const SampleOptions& options = {});

// [-1, 1] floats -> uint8 (N, C, H, W) by round((x + 1) * 127.5), clamped.
torch::Tensor to_uint8(const torch::Tensor& images);
// uint8 (N, C, H, W) -> floats in [-1, 1].
torch::Tensor from_uint8(const torch::Tensor& images);

// Every parameter of `module` from `tensors` (keys as its named_parameters, adapter tensors
// skipped). Throws naming `origin` and the key for a missing or misshaped tensor and for the
// first few tensors the module does not have, unless their key starts with one of `ignored`.
void load_module_tensors(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                         const std::string& origin, const std::vector<std::string>& ignored = {});

}  // namespace gsoft::diffusion
