#include "gsoft/train/lipconv.h"

#include <torch/torch.h>

#include <chrono>
#include <filesystem>

#include "gsoft/core/error.h"
#include "gsoft/dist/group.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/train/optim.h"
#include "io/file_util.h"
#include "train/run_state.h"

namespace gsoft {
namespace fs = std::filesystem;
using json = nlohmann::json;
using conv::LipConvNetImpl;

namespace {

json architecture(const conv::LipConvNetOptions& o) {
  return {{"conv", conv::conv_kind_name(o.conv())}, {"groups1", o.groups1()}, {"groups2", o.groups2()},
          {"depth", o.depth()}, {"init_channels", o.init_channels()}, {"in_channels", o.in_channels()},
          {"input_size", o.input_size()}, {"num_classes", o.num_classes()},
          {"activation", o.activation() == conv::Activation::MaxMin ? "maxmin" : "maxmin-permuted"},
          {"paired", o.paired()}, {"layout", o.layout() == conv::ShuffleLayout::Paper ? "paper" : "authors"},
          {"train_terms", o.train_terms()}, {"eval_terms", o.eval_terms()}};
}

// Parameters and buffers (power-iteration vectors, step counters): everything a resumed or
// reloaded network needs.
std::map<std::string, torch::Tensor> state_tensors(LipConvNetImpl& net) {
  std::map<std::string, torch::Tensor> t;
  for (const auto& p : net.named_parameters()) t[p.key()] = p.value();
  for (const auto& b : net.named_buffers()) t["buffer:" + b.key()] = b.value();
  return t;
}

json epoch_json(const LipConvEpoch& e) {
  json robust = json::object();
  for (size_t i = 0; i < e.test.eps.size(); ++i) robust[conv::radius_label(e.test.eps[i])] = e.test.robust_accuracy[i];
  return {{"type", "epoch"}, {"epoch", e.epoch}, {"step", e.step}, {"train_loss", e.train_loss},
          {"train_accuracy", e.train_accuracy}, {"train_seconds", e.train_seconds}, {"eval_seconds", e.eval_seconds},
          {"test_accuracy", e.test.accuracy}, {"robust_accuracy", robust}, {"mean_certificate", e.test.mean_certificate}};
}

}  // namespace

double input_lipschitz(const data::ImageDataset& d) {
  GSOFT_CHECK(!d.std.empty(), d.name, ": no normalisation statistics");
  double m = d.std[0];
  for (double s : d.std) m = std::min(m, s);
  return 1.0 / m;
}

conv::CertifiedAccuracy evaluate_lipconvnet(LipConvNetImpl& net, const data::ImageDataset& test, const std::vector<double>& eps,
                                            int64_t batch_size, dist::Group* group) {
  torch::NoGradGuard g;
  const bool was_training = net.is_training();
  net.eval();
  conv::CertificateMeter meter(eps, input_lipschitz(test));
  if (group && group->world_size() > 1) {
    // Each rank certifies its share; the gathered logits are the whole test set in order.
    const auto [b, e] = dist::shard_range(static_cast<size_t>(test.size()), group->rank(), group->world_size());
    std::vector<torch::Tensor> parts;
    for (auto i = static_cast<int64_t>(b); i < static_cast<int64_t>(e); i += batch_size) {
      const int64_t n = std::min(batch_size, static_cast<int64_t>(e) - i);
      parts.push_back(net.forward(data::normalize_images(test.images.narrow(0, i, n), test.mean, test.std)));
    }
    const torch::Tensor local = parts.empty() ? torch::zeros({0, net.options.num_classes()}) : torch::cat(parts);
    meter.add(group->all_gather_rows(local), test.labels);
  } else {
    for (int64_t i = 0; i < test.size(); i += batch_size) {
      const int64_t n = std::min(batch_size, test.size() - i);
      const torch::Tensor x = data::normalize_images(test.images.narrow(0, i, n), test.mean, test.std);
      meter.add(net.forward(x), test.labels.narrow(0, i, n));
    }
  }
  net.train(was_training);
  return meter.result();
}

void save_lipconvnet(LipConvNetImpl& net, const data::ImageDataset& d, const std::string& dir) {
  fs::create_directories(dir);
  std::map<std::string, torch::Tensor> t;
  for (const auto& [k, v] : state_tensors(net)) t[k] = v.detach().contiguous();
  io::write_safetensors((fs::path(dir) / "model.safetensors").string(), t, {{"format", "gsoft-lipconvnet"}});
  const json config = {{"architecture", architecture(net.options)}, {"dataset", d.name}, {"mean", d.mean}, {"std", d.std}};
  io::write_file_atomic((fs::path(dir) / "lipconvnet.json").string(), config.dump(2) + "\n");
}

LoadedLipConvNet load_lipconvnet(const std::string& dir) {
  const std::string cfg_path = (fs::path(dir) / "lipconvnet.json").string();
  const json c = io::parse_json(io::read_text_file(cfg_path), cfg_path);
  GSOFT_CHECK(c.is_object() && c.contains("architecture") && c["architecture"].is_object(), cfg_path,
              ": expected an object with \"architecture\"");
  const json& a = c["architecture"];
  conv::LipConvNetOptions o;
  o.conv(conv::parse_conv_kind(io::json_field<std::string>(a, "conv", "soc", cfg_path)))
      .groups1(io::json_field<int64_t>(a, "groups1", 4, cfg_path))
      .groups2(io::json_field<int64_t>(a, "groups2", 0, cfg_path))
      .depth(io::json_field<int64_t>(a, "depth", 15, cfg_path))
      .init_channels(io::json_field<int64_t>(a, "init_channels", 32, cfg_path))
      .in_channels(io::json_field<int64_t>(a, "in_channels", 3, cfg_path))
      .input_size(io::json_field<int64_t>(a, "input_size", 32, cfg_path))
      .num_classes(io::json_field<int64_t>(a, "num_classes", 10, cfg_path))
      .activation(conv::parse_activation(io::json_field<std::string>(a, "activation", "maxmin-permuted", cfg_path)))
      .paired(io::json_field<bool>(a, "paired", true, cfg_path))
      .layout(conv::parse_shuffle_layout(io::json_field<std::string>(a, "layout", "authors", cfg_path)))
      .train_terms(io::json_field<int64_t>(a, "train_terms", 5, cfg_path))
      .eval_terms(io::json_field<int64_t>(a, "eval_terms", 12, cfg_path))
      .init_iters(0);
  LoadedLipConvNet r;
  r.net = conv::LipConvNet(o);
  r.dataset = io::json_field<std::string>(c, "dataset", "", cfg_path);
  r.mean = io::json_field<std::vector<double>>(c, "mean", {}, cfg_path);
  r.std = io::json_field<std::vector<double>>(c, "std", {}, cfg_path);
  GSOFT_CHECK(static_cast<int64_t>(r.std.size()) == o.in_channels() && r.mean.size() == r.std.size(), cfg_path,
              ": expected ", o.in_channels(), " means and standard deviations, found ", r.mean.size(), " and ", r.std.size());
  const std::string model_path = (fs::path(dir) / "model.safetensors").string();
  io::SafetensorsFile f = io::read_safetensors(model_path);
  torch::NoGradGuard g;
  for (auto& [name, t] : state_tensors(*r.net)) {
    auto it = f.tensors.find(name);
    GSOFT_CHECK(it != f.tensors.end(), model_path, ": no tensor '", name, "' (does lipconvnet.json match?)");
    GSOFT_CHECK(it->second.sizes() == t.sizes(), model_path, ": '", name, "' has shape ", format_shape(it->second.sizes()),
                ", expected ", format_shape(t.sizes()));
    t.copy_(it->second);
  }
  r.net->eval();
  return r;
}

LipConvResult train_lipconvnet(LipConvNetImpl& net, const data::ImageDataset& train, const data::ImageDataset& test,
                               const LipConvTrainOptions& o, const TrainCallbacks& cb,
                               const std::function<void(const LipConvEpoch&)>& on_epoch) {
  GSOFT_CHECK(!o.out_dir.empty(), "lipconv train: out_dir is required");
  GSOFT_CHECK(o.epochs > 0 && o.batch_size > 0, "lipconv train: epochs and batch_size must be positive, got ", o.epochs,
              " and ", o.batch_size);
  GSOFT_CHECK(train.size() > 0 && test.size() > 0, "lipconv train: empty training or test set");
  GSOFT_CHECK(train.images.size(1) == net.options.in_channels() && train.images.size(2) == net.options.input_size(),
              "lipconv train: images are ", format_shape(train.images.sizes().slice(1)), ", the network expects (",
              net.options.in_channels(), ", ", net.options.input_size(), ", ", net.options.input_size(), ")");
  const fs::path out(o.out_dir);
  dist::Group solo(dist::DistOptions{});
  dist::Group& group = o.group ? *o.group : solo;
  const bool writer = group.is_main();  // rank 0 alone writes the run directory
  if (writer) fs::create_directories(out);
  const fs::path ckpt = out / "checkpoint.safetensors", log = out / "metrics.jsonl";
  const int64_t n = train.size(), per_epoch = (n + o.batch_size - 1) / o.batch_size;
  const int64_t total = o.epochs * per_epoch;
  const int64_t stop_at = o.max_steps > 0 ? std::min(total, o.max_steps) : total;
  const json print = {{"architecture", architecture(net.options)}, {"epochs", o.epochs}, {"batch_size", o.batch_size},
                      {"lr", o.lr}, {"momentum", o.momentum}, {"weight_decay", o.weight_decay},
                      {"crop_padding", o.crop_padding}, {"flip", o.flip}, {"seed", o.seed}, {"train_examples", n}};
  group.check_same("training options", print.dump());
  std::vector<std::pair<std::string, torch::Tensor>> params;
  std::vector<torch::Tensor> trainable;
  for (const auto& p : net.named_parameters()) params.emplace_back(p.key(), p.value()), trainable.push_back(p.value());
  SGD sgd(params, SGDOptions{o.lr, o.momentum, o.weight_decay});
  const auto tensors = state_tensors(net);
  LipConvResult r;
  int64_t step = 0;
  double best = -1;
  if (o.resume && fs::exists(ckpt)) {
    const auto s = train_detail::load_run_state(ckpt.string(), tensors, sgd, print);
    step = s.step;
    if (s.metadata.count("best_robust")) best = std::stod(s.metadata.at("best_robust"));
    if (writer) train_detail::trim_metrics(log.string(), step);
    if (cb.on_event) cb.on_event("resumed from step " + std::to_string(step) + " of " + std::to_string(total));
  } else if (writer) {
    fs::remove(log);
  }
  dist::check_start(group, step, ckpt.string());
  if (step == 0) {  // replicas start equal: weights and the power-iteration state
    std::vector<torch::Tensor> state;
    for (const auto& [k, v] : tensors) state.push_back(v);
    group.broadcast(state);
  }
  auto save = [&](int64_t at) {
    if (!writer) return;
    train_detail::save_run_state(ckpt.string(), tensors, sgd, at, print, {{"best_robust", std::to_string(best)}});
  };
  r.start_step = r.end_step = step;
  const std::vector<double> milestones{0.5, 0.75};
  input_lipschitz(train);  // checks the statistics before any work
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  auto epoch_start = std::chrono::steady_clock::now();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<size_t> order;
  int64_t order_epoch = -1;
  net.train();
  dist::GradReducer reducer(group, trainable);  // sums the gradients as the backward makes them
  while (step < stop_at) {
    const int64_t epoch = step / per_epoch, pos = step % per_epoch;
    if (seen == 0) {  // an epoch starts (or resumes: its training figures then cover the rest of it)
      loss_sum = 0, correct = 0;
      epoch_start = std::chrono::steady_clock::now();
    }
    if (epoch != order_epoch) order = train_detail::epoch_order(static_cast<size_t>(n), o.seed, epoch), order_epoch = epoch;
    const int64_t b0 = pos * o.batch_size, bn = std::min(o.batch_size, n - b0);
    const torch::Tensor idx = torch::tensor(std::vector<int64_t>(order.begin() + b0, order.begin() + b0 + bn), torch::kLong);
    torch::Tensor images = train.images.index_select(0, idx);
    if (o.crop_padding > 0 || o.flip)
      images = data::augment_images(images, o.crop_padding, o.flip, o.seed * 1000003ull + static_cast<uint64_t>(step));
    torch::Tensor x = data::normalize_images(images, train.mean, train.std);
    torch::Tensor y = train.labels.index_select(0, idx);
    // The global batch is augmented as one, so each rank's share is what one process would see.
    const auto [s0, s1] = dist::shard_range(static_cast<size_t>(bn), group.rank(), group.world_size());
    x = x.narrow(0, static_cast<int64_t>(s0), static_cast<int64_t>(s1 - s0));
    y = y.narrow(0, static_cast<int64_t>(s0), static_cast<int64_t>(s1 - s0));
    sgd.zero_grad();
    double lv = 0, right = 0;
    if (s1 > s0) {
      const torch::Tensor logits = net.forward(x);
      torch::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
      loss = dist::share_weighted(group, loss, static_cast<int64_t>(s1 - s0), bn);
      lv = loss.item<double>();
      right = static_cast<double>(logits.argmax(1).eq(y).sum().item<int64_t>());
      loss.backward();
    }
    const auto sums = reducer.finish({lv, right});
    lv = sums[0], right = sums[1];
    train_detail::check_finite_loss(lv, step + 1, "training", ckpt.string());
    const double factor = multistep_schedule(step, total, milestones, 0.1);
    sgd.step(factor);
    ++step;
    r.end_step = step;
    loss_sum += lv * static_cast<double>(bn);
    correct += static_cast<int64_t>(right);
    seen += bn;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    StepInfo info{step, total, epoch + 1, o.epochs, lv, o.lr * factor, 0,
                  static_cast<double>(step - r.start_step) / std::max(elapsed, 1e-9), 0};
    info.eta_seconds = static_cast<double>(stop_at - step) / std::max(info.steps_per_second, 1e-9);
    if (cb.on_step) cb.on_step(info);
    const bool stop = dist::any_rank(group, cb.should_stop && cb.should_stop());
    if (step % per_epoch == 0 || step == stop_at) {
      LipConvEpoch e;
      e.epoch = epoch + 1;
      e.step = step;
      e.train_loss = loss_sum / static_cast<double>(std::max<int64_t>(seen, 1));
      e.train_accuracy = static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(seen, 1));
      e.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
      const auto te = std::chrono::steady_clock::now();
      e.test = evaluate_lipconvnet(net, test, o.eps, o.eval_batch_size, &group);
      e.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
      if (writer) train_detail::append_jsonl(log.string(), epoch_json(e));
      if (writer) save_lipconvnet(net, train, out.string());
      const double robust = e.test.robust_accuracy.empty() ? e.test.accuracy : e.test.robust_accuracy[0];
      if (robust > best) {
        best = robust;
        if (writer)
          io::replace_directory((out / "best").string(), [&](const std::string& dir) { save_lipconvnet(net, train, dir); });
      }
      save(step);
      if (writer && cb.on_event) cb.on_event("checkpoint at step " + std::to_string(step));
      r.epochs.push_back(e);
      if (on_epoch) on_epoch(e);
      seen = 0;
    } else if (stop) {
      save(step);
      if (cb.on_event) cb.on_event("checkpoint at step " + std::to_string(step));
    }
    if (stop && step < stop_at) {
      r.interrupted = true;
      break;
    }
  }
  return r;
}

}  // namespace gsoft
