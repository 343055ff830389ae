#include "gsoft/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "gsoft/core/error.h"
#include "gsoft/data/metrics.h"
#include "gsoft/dist/group.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/models/encoder.h"
#include "gsoft/train/optim.h"
#include "io/file_util.h"
#include "train/run_state.h"

namespace gsoft {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kCheckpoint = "checkpoint.safetensors";
constexpr const char* kMetrics = "metrics.jsonl";

// The options a resumed run must share with the checkpoint's run.
json fingerprint(const TrainOptions& o, size_t n_train) {
  return {{"epochs", o.epochs}, {"max_steps", o.max_steps}, {"batch_size", o.batch_size}, {"lr", o.lr},
          {"head_lr", o.head_lr}, {"weight_decay", o.weight_decay}, {"warmup_steps", o.warmup_steps},
          {"warmup_ratio", o.warmup_ratio}, {"max_grad_norm", o.max_grad_norm}, {"seed", o.seed},
          {"train_examples", n_train}};
}

std::vector<ParamGroup> make_groups(SequenceClassifierImpl& model, const TrainOptions& o) {
  ParamGroup body{"adapter", {}, o.lr, o.weight_decay}, body_nd{"adapter_no_decay", {}, o.lr, 0};
  const double head_lr = o.head_lr > 0 ? o.head_lr : o.lr;
  ParamGroup head{"head", {}, head_lr, o.weight_decay}, head_nd{"head_no_decay", {}, head_lr, 0};
  for (const auto& p : model.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    const std::string& n = p.key();
    const bool no_decay = (n.size() >= 4 && n.compare(n.size() - 4, 4, "bias") == 0) || n.find("LayerNorm") != std::string::npos;
    const bool is_head = n.rfind("classifier.", 0) == 0;
    (is_head ? (no_decay ? head_nd : head) : (no_decay ? body_nd : body)).params.emplace_back(n, p.value());
  }
  std::vector<ParamGroup> groups;
  for (auto* g : {&body, &body_nd, &head, &head_nd})
    if (!g->params.empty()) groups.push_back(std::move(*g));
  GSOFT_CHECK(!groups.empty(), "train: the model has no trainable parameters (inject an adapter first)");
  return groups;
}

}  // namespace

EvalInfo evaluate_classifier(SequenceClassifierImpl& model, const std::vector<EncodedExample>& examples,
                             const BatchOptions& batch, const std::vector<data::Metric>& metrics, int64_t batch_size,
                             dist::Group* group) {
  GSOFT_CHECK(!examples.empty(), "evaluate: no examples");
  torch::Tensor logits;
  if (group && group->world_size() > 1) {
    const auto [b, e] = dist::shard_range(examples.size(), group->rank(), group->world_size());
    const std::vector<EncodedExample> mine(examples.begin() + static_cast<std::ptrdiff_t>(b),
                                           examples.begin() + static_cast<std::ptrdiff_t>(e));
    // A rank whose share is empty still joins the gather, with no rows of the right width.
    torch::Tensor local = !mine.empty() ? predict_logits(model, mine, batch_size, batch)
                                        : predict_logits(model, {examples.front()}, 1, batch).narrow(0, 0, 0);
    logits = group->all_gather_rows(local);
  } else {
    logits = predict_logits(model, examples, batch_size, batch);
  }
  torch::Tensor labels;
  if (batch.regression) {
    std::vector<float> l;
    for (const auto& e : examples) l.push_back(e.label);
    labels = torch::tensor(l, torch::kFloat);
  } else {
    std::vector<int64_t> l;
    for (const auto& e : examples) l.push_back(static_cast<int64_t>(e.label));
    labels = torch::tensor(l, torch::kLong);
  }
  EvalInfo info;
  info.loss = sequence_classification_loss(logits, labels).item<double>();
  std::vector<double> gold;
  for (const auto& e : examples) gold.push_back(e.label);
  info.metrics = data::compute_metrics(metrics, predictions_from_logits(logits), gold);
  return info;
}

TrainResult train_classifier(SequenceClassifierImpl& model, const AdapterConfig& adapter, const TrainData& data,
                             const TrainOptions& o, const TrainCallbacks& cb) {
  GSOFT_CHECK(!o.out_dir.empty(), "train: out_dir is required");
  GSOFT_CHECK(o.batch_size > 0, "train: batch_size must be positive, got ", o.batch_size);
  GSOFT_CHECK(o.epochs > 0 || o.max_steps > 0, "train: epochs or max_steps must be positive, got epochs ", o.epochs,
              " and max_steps ", o.max_steps);
  GSOFT_CHECK(o.lr > 0, "train: lr must be positive, got ", o.lr);
  GSOFT_CHECK(!data.train.empty(), "train: no training examples");
  GSOFT_CHECK(data.eval.empty() || !data.metrics.empty(), "train: evaluation data needs at least one metric");
  const fs::path out(o.out_dir);
  dist::Group solo(dist::DistOptions{});
  dist::Group& group = o.group ? *o.group : solo;
  const bool writer = group.is_main();  // rank 0 alone writes the run directory
  if (writer) fs::create_directories(out);

  std::vector<ParamGroup> groups = make_groups(model, o);
  std::vector<torch::Tensor> trainable;
  std::map<std::string, torch::Tensor> by_name;
  for (const auto& g : groups)
    for (const auto& [n, p] : g.params) trainable.push_back(p), by_name[n] = p;
  AdamW optimizer(groups);

  const int64_t n = static_cast<int64_t>(data.train.size());
  const int64_t per_epoch = (n + o.batch_size - 1) / o.batch_size;
  const int64_t total = o.max_steps > 0 ? o.max_steps : o.epochs * per_epoch;
  const int64_t epochs = (total + per_epoch - 1) / per_epoch;
  const int64_t warmup = o.warmup_steps >= 0 ? o.warmup_steps : static_cast<int64_t>(std::llround(o.warmup_ratio * total));
  const json print = fingerprint(o, data.train.size());
  group.check_same("training options", print.dump());
  group.check_same("adapter config", io::adapter_config_to_json(adapter));

  TrainResult result;
  result.total_steps = total;
  EvalInfo& best = result.best;
  int64_t step = 0;
  const fs::path ckpt = out / kCheckpoint;
  if (o.resume && fs::exists(ckpt)) {
    const train_detail::RunState state = train_detail::load_run_state(ckpt.string(), by_name, optimizer, print);
    step = state.step;
    const json b = io::parse_json(state.metadata.at("best"), ckpt.string() + " best");
    best.step = b.value("step", int64_t{-1});
    best.loss = b.value("loss", 0.0);
    best.metrics = b.value("metrics", std::map<std::string, double>{});
    if (writer) train_detail::trim_metrics((out / kMetrics).string(), step);
    if (cb.on_event) cb.on_event("resumed from step " + std::to_string(step) + " of " + std::to_string(total));
  } else {
    torch::manual_seed(o.seed);
    if (writer && fs::exists(out / kMetrics)) fs::remove(out / kMetrics);
  }
  dist::check_start(group, step, (out / kCheckpoint).string());
  // Replicas start equal (a resumed run already is: every rank read the same checkpoint), and
  // each rank draws its own dropout masks.
  if (step == 0) group.broadcast(trainable);
  if (group.world_size() > 1) torch::manual_seed(o.seed + 1000003 * static_cast<uint64_t>(group.rank() + 1) + static_cast<uint64_t>(step));
  result.start_step = result.end_step = step;

  auto save_checkpoint = [&](int64_t done) {
    if (!writer) return;
    const json b = {{"step", best.step}, {"loss", best.loss}, {"metrics", best.metrics}};
    train_detail::save_run_state(ckpt.string(), by_name, optimizer, done, print, {{"best", b.dump()}});
    if (cb.on_event) cb.on_event("checkpoint at step " + std::to_string(done));
  };

  const std::string main_metric = data.metrics.empty() ? "" : data::to_string(data.metrics[0]);
  auto run_eval = [&](int64_t done) {
    EvalInfo e = evaluate_classifier(model, data.eval, data.batch, data.metrics, std::max<int64_t>(o.batch_size, 32), &group);
    e.step = done;
    e.best = best.step < 0 || e.metrics.at(main_metric) > best.metrics.at(main_metric);
    json line = {{"type", "eval"}, {"step", done}, {"loss", e.loss}, {"best", e.best}};
    for (const auto& [k, v] : e.metrics) line[k] = v;
    if (e.best) {
      best = e;
      if (writer)
        io::replace_directory((out / "best").string(), [&](const std::string& dir) {
        io::save_adapter(dir, model, adapter);
        io::write_file_atomic((fs::path(dir) / "eval.json").string(), line.dump(2) + "\n");
      });
    }
    if (writer) train_detail::append_jsonl((out / kMetrics).string(), line);
    if (cb.on_eval) cb.on_eval(e);
  };

  std::vector<size_t> order;
  int64_t order_epoch = -1;
  const auto t0 = std::chrono::steady_clock::now();
  double eval_seconds = 0;
  model.train();
  dist::GradReducer reducer(group, trainable);  // sums the gradients as the backward makes them
  while (step < total) {
    const int64_t epoch = step / per_epoch, pos = step % per_epoch;
    if (epoch != order_epoch) order = train_detail::epoch_order(data.train.size(), o.seed, epoch), order_epoch = epoch;
    const size_t b0 = static_cast<size_t>(pos * o.batch_size);
    const std::vector<size_t> idx(order.begin() + static_cast<std::ptrdiff_t>(b0),
                                  order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), b0 + static_cast<size_t>(o.batch_size))));
    // This rank's share of the global batch, its loss weighted by the share: the summed gradient
    // is the gradient of the global batch's mean loss.
    const auto [s0, s1] = dist::shard_range(idx.size(), group.rank(), group.world_size());
    optimizer.zero_grad();
    double lv = 0;
    if (s1 > s0) {
      const std::vector<size_t> mine(idx.begin() + static_cast<std::ptrdiff_t>(s0), idx.begin() + static_cast<std::ptrdiff_t>(s1));
      const Batch batch = collate(data.train, mine, data.batch);
      const torch::Tensor logits = model.forward(batch.input_ids, batch.attention_mask, batch.token_type_ids);
      torch::Tensor loss = sequence_classification_loss(logits, batch.labels);
      loss = dist::share_weighted(group, loss, static_cast<int64_t>(s1 - s0), static_cast<int64_t>(idx.size()));
      lv = loss.item<double>();
      loss.backward();
    }
    lv = reducer.finish({lv})[0];
    train_detail::check_finite_loss(lv, step + 1, "training", ckpt.string());
    const double norm = clip_grad_norm(trainable, o.max_grad_norm);
    const double factor = linear_schedule(step, warmup, total);
    optimizer.step(factor);
    ++step;
    result.end_step = step;
    result.losses.push_back(lv);

    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - eval_seconds;
    const int64_t taken = step - result.start_step;
    StepInfo info{step, total, epoch + 1, epochs, lv, o.lr * factor, norm, taken / std::max(elapsed, 1e-9), 0};
    info.eta_seconds = (total - step) / std::max(info.steps_per_second, 1e-9);
    if (writer && o.log_every > 0 && (step % o.log_every == 0 || step == total))
      train_detail::append_jsonl((out / kMetrics).string(), {{"type", "train"}, {"step", step}, {"epoch", epoch + 1}, {"loss", lv},
                                    {"lr", info.lr}, {"grad_norm", norm}});
    if (cb.on_step) cb.on_step(info);

    bool evaluated = false;
    const bool eval_due = o.eval_every > 0 ? step % o.eval_every == 0 : step % per_epoch == 0;
    if (!data.eval.empty() && (eval_due || step == total)) {
      const auto e0 = std::chrono::steady_clock::now();
      run_eval(step);
      model.train();
      eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
      evaluated = true;
    }
    const bool stop = dist::any_rank(group, cb.should_stop && cb.should_stop());
    const bool ckpt_due = o.checkpoint_every > 0 ? step % o.checkpoint_every == 0 : evaluated;
    if (ckpt_due || step == total || stop) save_checkpoint(step);
    if (stop && step < total) {
      result.interrupted = true;
      break;
    }
  }
  result.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - eval_seconds;
  if (!result.interrupted && writer)
    io::replace_directory((out / "adapter").string(), [&](const std::string& dir) { io::save_adapter(dir, model, adapter); });
  result.all_reduce_bytes = group.stats().all_reduce_bytes;
  result.all_reduce_seconds = group.stats().all_reduce_seconds;
  return result;
}

}  // namespace gsoft
