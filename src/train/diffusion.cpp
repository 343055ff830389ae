#include "gsoft/train/diffusion.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include "gsoft/core/error.h"
#include "gsoft/dist/group.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/train/optim.h"
#include "train/run_state.h"

namespace gsoft {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json fingerprint(const DiffusionPretrainOptions& o, int64_t items) {
  return {{"max_steps", o.max_steps}, {"batch_size", o.batch_size}, {"lr", o.lr}, {"weight_decay", o.weight_decay},
          {"warmup_steps", o.warmup_steps}, {"ema_decay", o.ema_decay}, {"seed", o.seed}, {"items", items},
          {"small_probability", o.small_probability}, {"negative_probability", o.negative_probability},
          {"dropout", {o.dropout.size, o.dropout.position, o.dropout.caption}}};
}

double cosine_schedule(int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  return 0.1 + 0.9 * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
}

std::vector<std::pair<std::string, torch::Tensor>> pipeline_parameters(diffusion::Pipeline& p) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& q : p.unet->named_parameters()) out.emplace_back("unet." + q.key(), q.value());
  for (const auto& q : p.text_encoder->named_parameters()) out.emplace_back("text_encoder." + q.key(), q.value());
  return out;
}

void swap_tensors(const std::vector<std::pair<std::string, torch::Tensor>>& params, std::map<std::string, torch::Tensor>& ema) {
  torch::NoGradGuard g;
  for (const auto& [name, p] : params) {
    torch::Tensor& e = ema.at("ema." + name);
    const torch::Tensor tmp = p.detach().clone();
    p.copy_(e);
    e.copy_(tmp);
  }
}

}  // namespace

SceneBatch draw_scene_batch(const data::ImageDataset& items, int64_t batch_size, uint64_t seed, int64_t step,
                            double small_probability, double negative_probability, const data::CaptionDropout& dropout) {
  GSOFT_CHECK(items.size() > 0 && items.images.dim() == 4 && items.images.size(2) == 28 && items.images.size(3) == 28,
              "scene items: expected (N, 1, 28, 28) images, got ", format_shape(items.images.sizes()));
  std::mt19937_64 rng(train_detail::step_seed(seed, step, 1));
  std::uniform_int_distribution<int64_t> pick(0, items.size() - 1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  SceneBatch b;
  std::vector<torch::Tensor> canvases;
  for (int64_t i = 0; i < batch_size; ++i) {
    const int64_t k = pick(rng);
    data::Scene s;
    s.label = items.labels[k].item<int64_t>();
    s.size = u(rng) < small_probability ? data::ItemSize::Small : data::ItemSize::Large;
    s.quadrant = data::all_quadrants()[static_cast<size_t>(std::min<int64_t>(3, static_cast<int64_t>(u(rng) * 4)))];
    s.negative = u(rng) < negative_probability;
    canvases.push_back(data::compose_scene(items.images[k][0], s));
    b.captions.push_back(data::training_caption(s, dropout, rng));
    b.scenes.push_back(s);
  }
  b.canvases = torch::stack(canvases);
  return b;
}

void load_ema_weights(diffusion::Pipeline& pipeline, const std::string& checkpoint) {
  const auto file = io::read_safetensors(checkpoint);
  torch::NoGradGuard g;
  for (const auto& [name, p] : pipeline_parameters(pipeline)) {
    auto it = file.tensors.find("ema." + name);
    if (it == file.tensors.end()) throw std::runtime_error(checkpoint + ": no EMA tensor 'ema." + name + "'");
    if (it->second.sizes() != p.sizes())
      throw std::runtime_error(checkpoint + ": 'ema." + name + "' has shape " + format_shape(it->second.sizes()) +
                               ", expected " + format_shape(p.sizes()));
    p.copy_(it->second);
  }
}

DiffusionPretrainResult pretrain_diffusion(diffusion::Pipeline& p, const data::ImageDataset& items,
                                           const DiffusionPretrainOptions& o, const TrainCallbacks& cb,
                                           const std::function<void(int64_t, diffusion::Pipeline&)>& on_checkpoint) {
  GSOFT_CHECK(o.max_steps >= 1, "max_steps must be positive, got ", o.max_steps);
  GSOFT_CHECK(o.batch_size >= 1, "batch_size must be positive, got ", o.batch_size);
  GSOFT_CHECK(o.ema_decay >= 0 && o.ema_decay < 1, "ema_decay must be in [0, 1), got ", o.ema_decay);
  GSOFT_CHECK(!o.out_dir.empty(), "out_dir is required");
  GSOFT_CHECK(p.image_channels() == 1 && p.image_size() == data::kSceneSide, "the scenes are 1x32x32 but the UNet takes ",
              p.image_channels(), "x", p.image_size(), "x", p.image_size());
  const fs::path out(o.out_dir);
  dist::Group solo(dist::DistOptions{});
  dist::Group& group = o.group ? *o.group : solo;
  const bool writer = group.is_main();  // rank 0 alone writes the run directory
  if (writer) fs::create_directories(out);

  const auto params = pipeline_parameters(p);
  std::map<std::string, torch::Tensor> state, ema;
  ParamGroup decay{"decay", {}, o.lr, o.weight_decay}, no_decay{"no_decay", {}, o.lr, 0};
  std::vector<torch::Tensor> trainable;
  for (const auto& [name, t] : params) {
    t.set_requires_grad(true);
    state[name] = t;
    ema["ema." + name] = t.detach().clone();
    // Biases and normalisation weights (1-D) are not decayed.
    (t.dim() <= 1 ? no_decay : decay).params.emplace_back(name, t);
    trainable.push_back(t);
  }
  for (auto& [k, t] : ema) state[k] = t;
  AdamW optimizer({decay, no_decay});
  const json print = fingerprint(o, items.size());
  const fs::path ckpt = out / "checkpoint.safetensors", log = out / "metrics.jsonl";
  DiffusionPretrainResult r;
  r.total_steps = o.max_steps;
  group.check_same("training options", print.dump());
  int64_t step =
      train_detail::start_or_resume(o.out_dir, o.resume, state, optimizer, print, o.max_steps, cb.on_event, writer);
  dist::check_start(group, step, ckpt.string());
  if (step == 0) {  // replicas start equal
    std::vector<torch::Tensor> all;
    for (const auto& [k, t] : state) all.push_back(t);
    group.broadcast(all);
  }
  r.start_step = r.end_step = step;
  const diffusion::NoiseSchedule schedule(p.scheduler);
  const int64_t end = o.stop_at_step > 0 ? std::min(o.stop_at_step, o.max_steps) : o.max_steps;
  const int64_t warmup = std::min(o.warmup_steps, o.max_steps);
  auto save = [&](int64_t at) {
    if (!writer) return;
    train_detail::save_run_state(ckpt.string(), state, optimizer, at, print);
    swap_tensors(params, ema);  // the pipeline holds the EMA weights while it is written
    try {
      io::replace_directory((out / "pipeline").string(), [&](const std::string& dir) { p.save(dir); });
      if (on_checkpoint) on_checkpoint(at, p);
    } catch (...) {
      swap_tensors(params, ema);
      throw;
    }
    swap_tensors(params, ema);
    if (cb.on_event) cb.on_event("checkpoint at step " + std::to_string(at));
  };
  p.unet->train();
  p.text_encoder->train();
  const auto t0 = std::chrono::steady_clock::now();
  dist::GradReducer reducer(group, trainable);  // sums the gradients as the backward makes them
  while (step < end) {
    const SceneBatch b = draw_scene_batch(items, o.batch_size, o.seed, step, o.small_probability, o.negative_probability,
                                          o.dropout);
    const auto n = schedule.add_random_noise(diffusion::from_uint8(b.canvases).unsqueeze(1),
                                             train_detail::step_seed(o.seed, step, 2));
    // The step's scenes and noise are drawn as one batch; this rank trains on its rows.
    const auto [s0, s1] = dist::shard_range(b.captions.size(), group.rank(), group.world_size());
    const auto rows = static_cast<int64_t>(s1 - s0);
    optimizer.zero_grad();
    double lv = 0;
    if (rows > 0) {
      const std::vector<std::string> captions(b.captions.begin() + static_cast<std::ptrdiff_t>(s0),
                                              b.captions.begin() + static_cast<std::ptrdiff_t>(s1));
      const auto first = static_cast<int64_t>(s0);
      const torch::Tensor pred = p.unet->forward(n.noisy.narrow(0, first, rows), n.timesteps.narrow(0, first, rows),
                                                 p.encode_prompts(captions));
      torch::Tensor loss = torch::mse_loss(pred, n.noise.narrow(0, first, rows));
      loss = dist::share_weighted(group, loss, rows, static_cast<int64_t>(b.captions.size()));
      lv = loss.item<double>();
      loss.backward();
    }
    lv = reducer.finish({lv})[0];
    train_detail::check_finite_loss(lv, step + 1, "diffusion pretraining", ckpt.string());
    const double norm = clip_grad_norm(trainable, o.max_grad_norm);
    const double factor = cosine_schedule(step, warmup, o.max_steps);
    optimizer.step(factor);
    ++step;
    {
      torch::NoGradGuard g;
      const double d = std::min(o.ema_decay, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
      for (const auto& [name, w] : params) ema.at("ema." + name).mul_(d).add_(w.detach(), 1.0 - d);
    }
    r.end_step = step;
    r.losses.push_back(lv);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    StepInfo info{step, o.max_steps, 0, 0, lv, o.lr * factor, norm,
                  static_cast<double>(step - r.start_step) / std::max(elapsed, 1e-9), 0};
    info.eta_seconds = static_cast<double>(end - step) / std::max(info.steps_per_second, 1e-9);
    if (writer && o.log_every > 0 && (step % o.log_every == 0 || step == end))
      train_detail::append_jsonl(log.string(), {{"type", "train"}, {"step", step}, {"loss", lv}, {"lr", info.lr},
                                                {"grad_norm", norm}, {"seconds", elapsed}});
    if (cb.on_step) cb.on_step(info);
    const bool stop = dist::any_rank(group, cb.should_stop && cb.should_stop());
    if (stop || step == end || (o.checkpoint_every > 0 && step % o.checkpoint_every == 0)) save(step);
    if (stop && step < end) {
      r.interrupted = true;
      break;
    }
  }
  r.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace gsoft
