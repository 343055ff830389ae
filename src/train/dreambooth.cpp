#include "gsoft/train/dreambooth.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>

#include "gsoft/adapters/inject.h"
#include "gsoft/core/error.h"
#include "gsoft/data/fashion_scenes.h"
#include "gsoft/dist/group.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/train/optim.h"
#include "train/run_state.h"

namespace gsoft {
namespace fs = std::filesystem;
using nlohmann::json;

std::string Subject::instance_prompt() const {
  data::Prompt p;
  p.label = label;
  p.size = data::ItemSize::Large;
  p.token = token;
  return p.text();
}

std::string Subject::class_prompt() const {
  data::Prompt p;
  p.label = label;
  p.size = data::ItemSize::Large;
  return p.text();
}

torch::Tensor subject_views(const torch::Tensor& item, int64_t count) {
  GSOFT_CHECK(count >= 1 && count <= 9, "subject_views: count must be 1..9, got ", count);
  data::Scene s;
  const torch::Tensor centred = data::compose_scene(item, s);
  // The first view as composed, the others shifted by up to 2 pixels (the border is 2 pixels).
  static const int64_t shifts[9][2] = {{0, 0}, {-2, -1}, {2, 1}, {-1, 2}, {1, -2}, {2, -2}, {-2, 2}, {0, 2}, {2, 0}};
  std::vector<torch::Tensor> views;
  for (int64_t i = 0; i < count; ++i) views.push_back(torch::roll(centred, {shifts[i][0], shifts[i][1]}, {0, 1}));
  return torch::stack(views);
}

torch::Tensor dreambooth_loss(const torch::Tensor& pred, const torch::Tensor& noise, int64_t instances,
                              double prior_loss_weight) {
  GSOFT_CHECK(pred.sizes() == noise.sizes() && instances >= 1 && instances <= pred.size(0),
              "dreambooth_loss: prediction ", format_shape(pred.sizes()), ", noise ", format_shape(noise.sizes()),
              ", instances ", instances);
  torch::Tensor loss = torch::mse_loss(pred.narrow(0, 0, instances), noise.narrow(0, 0, instances));
  const int64_t prior = pred.size(0) - instances;
  if (prior > 0 && prior_loss_weight != 0)
    loss = loss + prior_loss_weight * torch::mse_loss(pred.narrow(0, instances, prior), noise.narrow(0, instances, prior));
  return loss;
}

DreamBoothResult train_dreambooth(diffusion::Pipeline& p, const Subject& subject, const torch::Tensor& class_images,
                                  const AdapterConfig& adapter, const DreamBoothOptions& o, const TrainCallbacks& cb) {
  GSOFT_CHECK(o.max_steps >= 1 && o.batch_size >= 1, "dreambooth: max_steps and batch_size must be positive");
  GSOFT_CHECK(!o.out_dir.empty(), "dreambooth: out_dir is required");
  GSOFT_CHECK(subject.views.dim() == 3 && subject.views.size(0) >= 1 && subject.views.size(1) == data::kSceneSide &&
                  subject.views.size(2) == data::kSceneSide && subject.views.scalar_type() == torch::kUInt8,
              "dreambooth: subject views must be (N, 32, 32) uint8, got ", format_shape(subject.views.sizes()));
  const bool prior = o.prior_loss_weight != 0;
  GSOFT_CHECK(!prior || (class_images.defined() && class_images.dim() == 3 && class_images.size(0) >= 1 &&
                         class_images.size(1) == data::kSceneSide && class_images.scalar_type() == torch::kUInt8),
              "dreambooth: prior preservation needs class images (M, 32, 32) uint8");
  const fs::path out(o.out_dir);
  dist::Group solo(dist::DistOptions{});
  dist::Group& group = o.group ? *o.group : solo;
  const bool writer = group.is_main();  // rank 0 alone writes the run directory
  if (writer) fs::create_directories(out);
  for (auto& q : p.text_encoder->parameters()) q.set_requires_grad(false);
  // Random adapter initialisations (LoRA's A) come from the seed alone, not from whatever drew from
  // the generator before (class images sampled or read from the cache, a rank's share of them).
  torch::manual_seed(o.seed);
  const InjectionReport report = inject_adapters(*p.unet, adapter);
  std::map<std::string, torch::Tensor> state;
  ParamGroup decay{"decay", {}, o.lr, o.weight_decay}, no_decay{"no_decay", {}, o.lr, 0};
  std::vector<torch::Tensor> trainable;
  for (const auto& q : p.unet->named_parameters()) {
    if (!q.value().requires_grad()) continue;
    state[q.key()] = q.value();
    (q.value().dim() <= 1 ? no_decay : decay).params.emplace_back(q.key(), q.value());
    trainable.push_back(q.value());
  }
  AdamW optimizer({decay, no_decay});
  const json print = {{"max_steps", o.max_steps}, {"batch_size", o.batch_size}, {"lr", o.lr},
                      {"prior_loss_weight", o.prior_loss_weight}, {"seed", o.seed}, {"method", to_string(adapter.method)},
                      {"views", subject.views.size(0)}, {"class_images", prior ? class_images.size(0) : 0},
                      {"instance_prompt", subject.instance_prompt()}};
  const fs::path ckpt = out / "checkpoint.safetensors", log = out / "metrics.jsonl";
  DreamBoothResult r;
  r.total_steps = o.max_steps;
  r.trainable_params = report.trainable_params;
  group.check_same("training options", print.dump());
  int64_t step =
      train_detail::start_or_resume(o.out_dir, o.resume, state, optimizer, print, o.max_steps, cb.on_event, writer);
  dist::check_start(group, step, ckpt.string());
  if (step == 0) group.broadcast(trainable);  // replicas start equal (LoRA's A is random)
  r.start_step = r.end_step = step;

  // What the model is asked to draw: the frozen text encoder's states, computed once.
  torch::Tensor instance_ctx, class_ctx;
  {
    torch::NoGradGuard g;
    p.text_encoder->eval();
    instance_ctx = p.encode_prompts({subject.instance_prompt()});
    class_ctx = p.encode_prompts({subject.class_prompt()});
  }
  // Full fine-tuning writes a whole pipeline; adapters write the adapter directory.
  auto save_output = [&](const std::string& name) {
    if (!writer) return;
    const bool full = adapter.method == Method::Full;
    const fs::path dir = out / (full ? "pipeline" + name : "adapter" + name);
    io::replace_directory(dir.string(), [&](const std::string& tmp) {
      if (full) p.save(tmp);
      else io::save_adapter(tmp, *p.unet, adapter);
    });
  };
  const diffusion::NoiseSchedule schedule(p.scheduler);
  const int64_t b = o.batch_size;
  p.unet->train();
  const auto t0 = std::chrono::steady_clock::now();
  dist::GradReducer reducer(group, trainable);  // sums the gradients as the backward makes them
  while (step < o.max_steps) {
    std::mt19937_64 rng(train_detail::step_seed(o.seed, step, 1));
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < b; ++i) idx.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(subject.views.size(0))));
    std::vector<torch::Tensor> images{subject.views.index_select(0, torch::tensor(idx))};
    if (prior) {
      std::vector<int64_t> cidx;
      for (int64_t i = 0; i < b; ++i) cidx.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(class_images.size(0))));
      images.push_back(class_images.index_select(0, torch::tensor(cidx)));
    }
    const auto n = schedule.add_random_noise(diffusion::from_uint8(torch::cat(images)).unsqueeze(1),
                                             train_detail::step_seed(o.seed, step, 2));
    // This rank's share: instance rows [s0, s1) and the class rows b + [s0, s1). Both loss terms
    // are means over that many rows, so scaling by the share makes the sum the global loss.
    const auto [s0, s1] = dist::shard_range(static_cast<size_t>(b), group.rank(), group.world_size());
    const auto rows = static_cast<int64_t>(s1 - s0);
    optimizer.zero_grad();
    double lv = 0;
    if (rows > 0) {
      auto pick = torch::arange(static_cast<int64_t>(s0), static_cast<int64_t>(s1));
      if (prior) pick = torch::cat({pick, pick + b});
      const torch::Tensor ctx = prior ? torch::cat({instance_ctx.expand({rows, -1, -1}), class_ctx.expand({rows, -1, -1})})
                                      : instance_ctx.expand({rows, -1, -1});
      torch::Tensor loss = dreambooth_loss(
          p.unet->forward(n.noisy.index_select(0, pick), n.timesteps.index_select(0, pick), ctx),
          n.noise.index_select(0, pick), rows, o.prior_loss_weight);
      loss = dist::share_weighted(group, loss, rows, b);
      lv = loss.item<double>();
      loss.backward();
    }
    lv = reducer.finish({lv})[0];
    train_detail::check_finite_loss(lv, step + 1, "dreambooth", ckpt.string());
    const double norm = clip_grad_norm(trainable, o.max_grad_norm);
    const double factor = step < o.warmup_steps ? static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps) : 1.0;
    optimizer.step(factor);
    ++step;
    r.end_step = step;
    r.losses.push_back(lv);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    StepInfo info{step, o.max_steps, 0, 0, lv, o.lr * factor, norm,
                  static_cast<double>(step - r.start_step) / std::max(elapsed, 1e-9), 0};
    info.eta_seconds = static_cast<double>(o.max_steps - step) / std::max(info.steps_per_second, 1e-9);
    if (writer && o.log_every > 0 && (step % o.log_every == 0 || step == o.max_steps))
      train_detail::append_jsonl(log.string(), {{"type", "train"}, {"step", step}, {"loss", lv}, {"lr", info.lr},
                                                {"grad_norm", norm}, {"seconds", elapsed}});
    if (cb.on_step) cb.on_step(info);
    if (std::find(o.save_steps.begin(), o.save_steps.end(), step) != o.save_steps.end())
      save_output("-step" + std::to_string(step));
    const bool stop = dist::any_rank(group, cb.should_stop && cb.should_stop());
    if (writer && (stop || step == o.max_steps || (o.checkpoint_every > 0 && step % o.checkpoint_every == 0))) {
      train_detail::save_run_state(ckpt.string(), state, optimizer, step, print);
      if (cb.on_event) cb.on_event("checkpoint at step " + std::to_string(step));
    }
    if (stop && step < o.max_steps) {
      r.interrupted = true;
      break;
    }
  }
  r.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r.interrupted) save_output("");
  return r;
}

}  // namespace gsoft
