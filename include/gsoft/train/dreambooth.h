#pragma once
// Subject-driven fine-tuning (DreamBooth, Ruiz et al. 2023, as diffusers' train_dreambooth.py and
// the GSOFT authors' gsoft_diffusion/ run it): a few photos of one subject, the instance prompt
// "a photo of a large sks {class}", and prior preservation with images of the class that the base
// pipeline generated for "a photo of a large {class}". The UNet trains through its adapters (or
// in full); the text encoder is frozen.
//
//   loss = mse(eps_instance, noise_instance) + prior_loss_weight * mse(eps_class, noise_class)
//
// Each step's views, class images, noise and timesteps are drawn from (seed, step) alone, so a
// run resumed from out_dir/checkpoint.safetensors repeats the uninterrupted one.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gsoft/adapters/config.h"
#include "gsoft/diffusion/pipeline.h"
#include "gsoft/train/trainer.h"

namespace gsoft {

struct Subject {
  torch::Tensor views;  // (N, 32, 32) uint8: the subject's photos
  int64_t label = 0;    // its class (0-9)
  std::string token = "sks";
  std::string instance_prompt() const;  // "a photo of a large sks {class}"
  std::string class_prompt() const;     // "a photo of a large {class}"
};

// `count` photos of one Fashion-MNIST item ((28, 28) uint8): large, positive, each shifted by up to
// 2 pixels (the first not at all), on the 32x32 canvas.
torch::Tensor subject_views(const torch::Tensor& item, int64_t count = 5);

struct DreamBoothOptions {
  int64_t max_steps = 400;
  int64_t batch_size = 4;          // instance images per step, and as many class images
  double lr = 1e-3;                // constant after warm-up (the authors' script: constant)
  int64_t warmup_steps = 0;
  double weight_decay = 0.01;
  double max_grad_norm = 1.0;
  double prior_loss_weight = 1.0;  // 0: no prior preservation
  std::vector<int64_t> save_steps; // also write the adapter at these steps (adapter-step<N>/)
  int64_t log_every = 20;
  int64_t checkpoint_every = 100;
  uint64_t seed = 0;
  std::string out_dir;
  bool resume = true;
  // Data-parallel training (not owned; null: this process alone): each rank takes its share of the
  // step's instance rows and the same share of its class rows (drawn and noised as one batch),
  // gradients are summed, rank 0 writes.
  dist::Group* group = nullptr;
};

struct DreamBoothResult {
  bool interrupted = false;
  int64_t start_step = 0, end_step = 0, total_steps = 0;
  std::vector<double> losses;
  double train_seconds = 0;
  int64_t trainable_params = 0;
};

// The prior-preservation loss for a prediction of a batch whose first `instances` rows are
// instance images and the rest class images.
torch::Tensor dreambooth_loss(const torch::Tensor& pred, const torch::Tensor& noise, int64_t instances,
                              double prior_loss_weight);

// `adapter` is injected into pipeline.unet here (Method::Full trains every UNet weight). Writes
// out_dir/adapter/ (PEFT layout) at the end (out_dir/unet/ for full fine-tuning), and
// adapter-step<N>/ at each save step. `class_images` (M, 32, 32) uint8 may be empty only with
// prior_loss_weight 0.
DreamBoothResult train_dreambooth(diffusion::Pipeline& pipeline, const Subject& subject, const torch::Tensor& class_images,
                                  const AdapterConfig& adapter, const DreamBoothOptions& options,
                                  const TrainCallbacks& callbacks = {});

}  // namespace gsoft
