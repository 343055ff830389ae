#pragma once
// The noise schedule of DDPM (training: q(x_t | x_0)) and the deterministic DDIM sampler (eta = 0),
// configured from diffusers' scheduler/scheduler_config.json with diffusers' formulas:
//
//   betas: "linear" linspace(beta_start, beta_end, T); "scaled_linear" linspace(sqrt(bs), sqrt(be), T)^2
//   alpha_bar_t = prod_{s <= t} (1 - beta_s)
//   add_noise:   x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
//   DDIM step:   x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)   (clamped to +-clip_sample_range)
//                x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps
//                (eps re-derived from the clipped x0 with use_clipped_model_output)
//   with a_prev = alpha_bar of t - T / steps, or (after the last step) 1 with set_alpha_to_one,
//   else alpha_bar_0; timesteps "leading": (steps-1 .. 0) * (T / steps) + steps_offset.
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace gsoft::diffusion {

struct SchedulerConfig {
  std::string class_name = "DDIMScheduler";  // DDIMScheduler or DDPMScheduler: same schedule
  int64_t num_train_timesteps = 1000;
  double beta_start = 1e-4;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";  // linear or scaled_linear
  std::string prediction_type = "epsilon";
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  bool set_alpha_to_one = true;
  int64_t steps_offset = 0;

  // Reads scheduler_config.json; anything but epsilon prediction, leading spacing and the two beta
  // schedules is an error naming the field and the supported values.
  static SchedulerConfig from_json(const std::string& text, const std::string& origin = "scheduler_config.json");
  nlohmann::json to_json() const;
};

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const SchedulerConfig& config);

  const SchedulerConfig& config() const { return config_; }
  // (T) float64
  const torch::Tensor& betas() const { return betas_; }
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }

  // x0, noise (B, ...), timesteps (B) int64 in [0, T) -> x_t, in x0's dtype.
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& timesteps) const;

  // The training input of one step: noise and uniform timesteps in [0, T) drawn from `seed` alone
  // (so a resumed run draws the same), and x0 noised with them.
  struct NoisyBatch {
    torch::Tensor noise, timesteps, noisy;
  };
  NoisyBatch add_random_noise(const torch::Tensor& x0, uint64_t seed) const;

  // The DDIM timesteps for `steps` inference steps, from the noisiest. Throws unless 1 <= steps <= T.
  std::vector<int64_t> ddim_timesteps(int64_t steps) const;
  // One DDIM step (eta 0) from timestep t to t - T / steps, for a predicted noise `eps`. With
  // use_clipped_model_output (diffusers' step() argument of that name, GLIDE's practice), the noise
  // is re-derived from the clipped x0, eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t), so the step
  // stays consistent when guidance pushes x0 past the clipping range.
  torch::Tensor ddim_step(const torch::Tensor& eps, int64_t t, int64_t steps, const torch::Tensor& sample,
                          bool use_clipped_model_output = false) const;

 private:
  double alpha_bar(int64_t t) const;  // t < 0: the final alpha
  SchedulerConfig config_;
  torch::Tensor betas_, alphas_cumprod_;
  std::vector<double> alpha_bar_;
};

}  // namespace gsoft::diffusion
