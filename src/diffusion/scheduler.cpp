#include "gsoft/diffusion/scheduler.h"

#include <torch/torch.h>

#include <cmath>

#include "gsoft/core/error.h"
#include "io/file_util.h"

namespace gsoft::diffusion {

SchedulerConfig SchedulerConfig::from_json(const std::string& text, const std::string& origin) {
  const nlohmann::json j = io::parse_json(text, origin);
  if (!j.is_object()) throw std::runtime_error(origin + ": expected a JSON object");
  SchedulerConfig c;
  c.class_name = io::json_field<std::string>(j, "_class_name", c.class_name, origin);
  if (c.class_name != "DDIMScheduler" && c.class_name != "DDPMScheduler")
    throw std::runtime_error(origin + ": _class_name '" + c.class_name + "' is not supported (DDIMScheduler, DDPMScheduler)");
  c.num_train_timesteps = io::json_field<int64_t>(j, "num_train_timesteps", c.num_train_timesteps, origin);
  c.beta_start = io::json_field<double>(j, "beta_start", c.beta_start, origin);
  c.beta_end = io::json_field<double>(j, "beta_end", c.beta_end, origin);
  c.beta_schedule = io::json_field<std::string>(j, "beta_schedule", c.beta_schedule, origin);
  c.prediction_type = io::json_field<std::string>(j, "prediction_type", c.prediction_type, origin);
  c.clip_sample = io::json_field<bool>(j, "clip_sample", c.clip_sample, origin);
  c.clip_sample_range = io::json_field<double>(j, "clip_sample_range", c.clip_sample_range, origin);
  c.set_alpha_to_one = io::json_field<bool>(j, "set_alpha_to_one", c.set_alpha_to_one, origin);
  c.steps_offset = io::json_field<int64_t>(j, "steps_offset", c.steps_offset, origin);
  auto one_of = [&](const char* field, const std::string& v, std::initializer_list<const char*> ok) {
    std::string list;
    for (const char* o : ok) {
      if (v == o) return;
      list += (list.empty() ? "" : ", ") + std::string(o);
    }
    throw std::runtime_error(origin + ": " + field + " '" + v + "' is not supported (" + list + ")");
  };
  one_of("beta_schedule", c.beta_schedule, {"linear", "scaled_linear"});
  one_of("prediction_type", c.prediction_type, {"epsilon"});
  one_of("timestep_spacing", io::json_field<std::string>(j, "timestep_spacing", "leading", origin), {"leading"});
  if (c.num_train_timesteps < 2 || c.num_train_timesteps > 100000)
    throw std::runtime_error(origin + ": num_train_timesteps is " + std::to_string(c.num_train_timesteps) + ", expected 2..100000");
  if (!(c.beta_start > 0 && c.beta_end < 1 && c.beta_start <= c.beta_end))
    throw std::runtime_error(origin + ": betas must satisfy 0 < beta_start <= beta_end < 1, found " +
                             std::to_string(c.beta_start) + " and " + std::to_string(c.beta_end));
  if (c.steps_offset < 0 || c.steps_offset >= c.num_train_timesteps)
    throw std::runtime_error(origin + ": steps_offset " + std::to_string(c.steps_offset) + " is outside [0, num_train_timesteps)");
  return c;
}

nlohmann::json SchedulerConfig::to_json() const {
  return {{"_class_name", class_name},         {"_diffusers_version", "0.21.0"},
          {"num_train_timesteps", num_train_timesteps}, {"beta_start", beta_start},
          {"beta_end", beta_end},               {"beta_schedule", beta_schedule},
          {"prediction_type", prediction_type}, {"clip_sample", clip_sample},
          {"clip_sample_range", clip_sample_range}, {"set_alpha_to_one", set_alpha_to_one},
          {"steps_offset", steps_offset},       {"timestep_spacing", "leading"}};
}

NoiseSchedule::NoiseSchedule(const SchedulerConfig& c) : config_(c) {
  const int64_t T = c.num_train_timesteps;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  betas_ = c.beta_schedule == "scaled_linear"
               ? torch::linspace(std::sqrt(c.beta_start), std::sqrt(c.beta_end), T, opts).pow(2)
               : torch::linspace(c.beta_start, c.beta_end, T, opts);
  alphas_cumprod_ = torch::cumprod(1.0 - betas_, 0);
  const double* p = alphas_cumprod_.data_ptr<double>();
  alpha_bar_.assign(p, p + T);
}

double NoiseSchedule::alpha_bar(int64_t t) const {
  if (t < 0) return config_.set_alpha_to_one ? 1.0 : alpha_bar_[0];
  return alpha_bar_.at(static_cast<size_t>(t));
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t) const {
  GSOFT_CHECK(x0.sizes() == noise.sizes(), "add_noise: x0 ", format_shape(x0.sizes()), " and noise ",
              format_shape(noise.sizes()), " differ");
  GSOFT_CHECK(t.dim() == 1 && t.size(0) == x0.size(0), "add_noise: expected (", x0.size(0), ") timesteps, got ",
              format_shape(t.sizes()));
  GSOFT_CHECK(t.numel() == 0 || (t.min().item<int64_t>() >= 0 && t.max().item<int64_t>() < config_.num_train_timesteps),
              "add_noise: timesteps must be in [0, ", config_.num_train_timesteps, ")");
  std::vector<int64_t> shape(static_cast<size_t>(x0.dim()), 1);
  shape[0] = x0.size(0);
  const torch::Tensor a = alphas_cumprod_.index_select(0, t.to(torch::kLong)).to(x0.scalar_type()).reshape(shape);
  return a.sqrt() * x0 + (1.0 - a).sqrt() * noise;
}

NoiseSchedule::NoisyBatch NoiseSchedule::add_random_noise(const torch::Tensor& x0, uint64_t seed) const {
  auto gen = at::detail::createCPUGenerator(seed);
  NoisyBatch b;
  b.noise = torch::randn(x0.sizes(), gen, x0.scalar_type());
  b.timesteps = torch::randint(0, config_.num_train_timesteps, {x0.size(0)}, gen, torch::kLong);
  b.noisy = add_noise(x0, b.noise, b.timesteps);
  return b;
}

std::vector<int64_t> NoiseSchedule::ddim_timesteps(int64_t steps) const {
  GSOFT_CHECK(steps >= 1 && steps <= config_.num_train_timesteps, "DDIM steps must be in 1..",
              config_.num_train_timesteps, ", got ", steps);
  const int64_t ratio = config_.num_train_timesteps / steps;
  std::vector<int64_t> t;
  for (int64_t i = steps - 1; i >= 0; --i) t.push_back(std::min(i * ratio + config_.steps_offset, config_.num_train_timesteps - 1));
  return t;
}

torch::Tensor NoiseSchedule::ddim_step(const torch::Tensor& eps, int64_t t, int64_t steps, const torch::Tensor& sample,
                                       bool use_clipped_model_output) const {
  GSOFT_CHECK(eps.sizes() == sample.sizes(), "ddim_step: eps ", format_shape(eps.sizes()), " and sample ",
              format_shape(sample.sizes()), " differ");
  const int64_t prev = t - config_.num_train_timesteps / steps;
  const double a = alpha_bar(t), a_prev = alpha_bar(prev);
  torch::Tensor x0 = (sample - std::sqrt(1.0 - a) * eps) / std::sqrt(a);
  if (config_.clip_sample) x0 = x0.clamp(-config_.clip_sample_range, config_.clip_sample_range);
  const torch::Tensor e = use_clipped_model_output ? (sample - std::sqrt(a) * x0) / std::sqrt(1.0 - a) : eps;
  return std::sqrt(a_prev) * x0 + std::sqrt(1.0 - a_prev) * e;
}

}  // namespace gsoft::diffusion
