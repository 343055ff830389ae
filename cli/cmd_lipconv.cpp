// gsoft lipconv train | eval | info: certifiably robust LipConvNets with SOC or GS-SOC layers.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "distributed.h"
#include "gsoft/core/error.h"
#include "gsoft/core/runtime.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/train/lipconv.h"
#include "json_config.h"
#include "lipconv_options.h"
#include "progress.h"

namespace gsoft::cli {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

struct DataOptions {
  std::string dataset = "fashion-mnist", dir;
  int64_t pad_to = 32, train_subset = 0, test_subset = 0;
  std::vector<double> eps{36, 72};

  // Evaluation pads to the saved model's input side, so only training takes --pad-to.
  void add_to(CLI::App* cmd, bool training) {
    cmd->add_option("--dataset", dataset, "fashion-mnist, cifar10 or cifar100")->capture_default_str()
        ->check(CLI::IsMember({"fashion-mnist", "cifar10", "cifar100"}));
    cmd->add_option("--data", dir,
                    "Directory of the dataset files (fashion-mnist: /usr/share/datasets/fashion-mnist, from Debian's\n"
                    "dataset-fashion-mnist; cifar10: data_batch_*.bin, test_batch.bin; cifar100: train.bin, test.bin)");
    if (training)
      cmd->add_option("--pad-to", pad_to, "Zero-pad images to this side (a multiple of 32; Fashion-MNIST's 28 -> 32)")
          ->capture_default_str();
    cmd->add_option("--train-subset", train_subset, "Use only the first N training images (0: all)")->capture_default_str();
    cmd->add_option("--test-subset", test_subset, "Certify only the first N test images (0: all)")->capture_default_str();
    cmd->add_option("--eps", eps, "Certified radii, in units of 1/255")->delimiter(',')->capture_default_str();
  }
  std::vector<double> radii() const {
    std::vector<double> r;
    for (double e : eps) r.push_back(e / 255.0);
    return r;
  }
  data::ImageDataset load(bool train) const {
    data::ImageDataset d = data::load_image_dataset(dataset, dir, train);
    const int64_t subset = train ? train_subset : test_subset;
    if (subset > 0 && subset < d.size()) {
      d.images = d.images.narrow(0, 0, subset);
      d.labels = d.labels.narrow(0, 0, subset);
    }
    return data::pad_images(d, pad_to);
  }
};

json certified_json(const conv::CertifiedAccuracy& c) {
  json robust = json::object();
  for (size_t i = 0; i < c.eps.size(); ++i) robust[conv::radius_label(c.eps[i])] = c.robust_accuracy[i];
  return {{"images", c.count}, {"accuracy", c.accuracy}, {"robust_accuracy", robust}, {"mean_certificate", c.mean_certificate}};
}

struct TrainCli {
  LipConvArchOptions arch;
  DataOptions data;
  LipConvTrainOptions train;
  int64_t log_every = 50;
  bool no_resume = false;
  DistCliOptions dist;
  CLI::App* cmd = nullptr;
};

void run_train(TrainCli& o) {
  const auto group = launch_or_join(o.dist);
  if (!group) return;  // this process launched the workers
  const bool main_rank = group->is_main();
  const data::ImageDataset train = o.data.load(true), test = o.data.load(false);
  if (main_rank)
    std::cerr << "lipconv: " << o.data.dataset << ": " << train.size() << " training and " << test.size()
            << " test images of " << gsoft::format_shape(train.images.sizes().slice(1)) << "\n";
  const conv::LipConvNetOptions arch = o.arch.to_options(train.images.size(1), train.images.size(2), train.num_classes);
  torch::manual_seed(o.train.seed);
  conv::LipConvNet net(arch);
  if (main_rank)
    std::cerr << "lipconv: LipConvNet-" << arch.depth() << " " << arch.describe() << ", "
            << conv::count_trainable_parameters(*net) << " parameters\n";
  LipConvTrainOptions t = o.train;
  t.eps = o.data.radii();
  t.resume = !o.no_resume;
  t.group = group.get();
  if (main_rank) {
    fs::create_directories(t.out_dir);
    io::write_file_atomic((fs::path(t.out_dir) / "run_config.json").string(), resolved_options(o.cmd).dump(2) + "\n");
  }
  const TrainCallbacks cb = callbacks_for_rank(*group, console_callbacks("lipconv", o.log_every));
  auto on_epoch = [&](const LipConvEpoch& e) {
    std::cerr << "epoch " << e.epoch << "/" << t.epochs << ": train loss " << e.train_loss << ", accuracy "
              << e.train_accuracy << " | test accuracy " << e.test.accuracy;
    for (size_t i = 0; i < e.test.eps.size(); ++i)
      std::cerr << " | certified " << conv::radius_label(e.test.eps[i]) << " " << e.test.robust_accuracy[i];
    std::cerr << " | mean certificate " << e.test.mean_certificate << " | " << format_duration(e.train_seconds)
              << " training, " << format_duration(e.eval_seconds) << " certifying" << std::endl;
  };
  const LipConvResult r = train_lipconvnet(*net, train, test, t, cb,
                                           main_rank ? std::function<void(const LipConvEpoch&)>(on_epoch) : nullptr);
  if (other_rank_done(*group, r.interrupted)) return;  // rank 0 reports
  if (r.interrupted) {
    std::cerr << "lipconv: interrupted at step " << r.end_step << "; checkpoint saved. Run the same command to resume.\n";
    throw ExitStatus{130};
  }
  json summary = {{"dataset", o.data.dataset}, {"conv", arch.describe()}, {"depth", arch.depth()},
                  {"params", conv::count_trainable_parameters(*net)}, {"steps", r.end_step}, {"out", t.out_dir},
                  {"peak_rss_mb", peak_rss_mb()}};
  if (!r.epochs.empty()) {
    summary["last_epoch"] = r.epochs.back().epoch;
    summary["test"] = certified_json(r.epochs.back().test);
    double seconds = 0;
    for (const auto& e : r.epochs) seconds += e.train_seconds;
    summary["train_seconds_per_epoch"] = seconds / static_cast<double>(r.epochs.size());
  }
  std::cout << summary.dump() << std::endl;
}

struct EvalCli {
  std::string model;
  DataOptions data;
  int64_t batch_size = 256;
};

void run_eval(EvalCli& o) {
  LoadedLipConvNet m = load_lipconvnet(o.model);
  DataOptions d = o.data;
  if (d.dataset.empty()) d.dataset = m.dataset;  // the model's own unless --dataset says otherwise
  d.pad_to = m.net->options.input_size();
  data::ImageDataset test = d.load(false);
  GSOFT_CHECK(test.images.size(1) == m.net->options.in_channels(), o.model, ": the model takes ",
              m.net->options.in_channels(), " channels, ", d.dataset, " has ", test.images.size(1));
  test.mean = m.mean;
  test.std = m.std;
  const conv::CertifiedAccuracy c = evaluate_lipconvnet(*m.net, test, d.radii(), o.batch_size);
  json j = certified_json(c);
  j["model"] = o.model;
  j["dataset"] = d.dataset;
  j["conv"] = m.net->options.describe();
  std::cout << j.dump() << std::endl;
}

struct InfoCli {
  LipConvArchOptions arch;
  int64_t classes = 10, input_size = 32, in_channels = 3;
};

void run_info(InfoCli& o) {
  conv::LipConvNetOptions a = o.arch.to_options(o.in_channels, o.input_size, o.classes);
  a.init_iters(0);
  conv::LipConvNet net(a);
  std::printf("LipConvNet-%lld %s, input %lldx%lldx%lld, %lld classes\n", static_cast<long long>(a.depth()),
              a.describe().c_str(), static_cast<long long>(a.in_channels()), static_cast<long long>(a.input_size()),
              static_cast<long long>(a.input_size()), static_cast<long long>(a.num_classes()));
  std::printf("%-10s %-14s %6s %6s %6s %6s %6s %12s\n", "layer", "kind", "in", "out", "kernel", "stride", "side", "params");
  for (const auto& l : net->layers())
    std::printf("%-10s %-14s %6lld %6lld %6lld %6lld %6lld %12lld\n", l.name.c_str(), l.kind.c_str(),
                static_cast<long long>(l.in_channels), static_cast<long long>(l.out_channels),
                static_cast<long long>(l.kernel_size), static_cast<long long>(l.stride), static_cast<long long>(l.size_in),
                static_cast<long long>(l.params));
  const json j = {{"conv", a.describe()}, {"depth", a.depth()}, {"classes", a.num_classes()}, {"input_size", a.input_size()},
                  {"in_channels", a.in_channels()}, {"params", conv::count_trainable_parameters(*net)}};
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace

void setup_lipconv(CLI::App& app, Runners& runners) {
  auto* lip = app.add_subcommand("lipconv", "Certifiably robust LipConvNets with SOC or GS-SOC orthogonal convolutions");
  lip->require_subcommand(1);

  auto t = std::make_shared<TrainCli>();
  auto* train = lip->add_subcommand(
      "train",
      "Train a LipConvNet with the paper's recipe (SGD lr 0.1, momentum 0.9, weight decay 5e-4, lr /10 at 50% and 75%\n"
      "of the steps, random crop with padding 4 and flips) and certify the test set after each epoch.\n"
      "RUN_DIR gets checkpoint.safetensors (Ctrl-C saves; the same command resumes), metrics.jsonl, the last model\n"
      "(model.safetensors + lipconvnet.json) and best/ (best certified accuracy at the first --eps).\n"
      "Example: gsoft lipconv train --dataset fashion-mnist --conv gs-soc --groups 4,1 --depth 10 --epochs 3 --out runs/gs");
  t->cmd = train;
  add_json_config(train);
  t->data.add_to(train, true);
  t->arch.add_to(train);
  train->add_option("--epochs", t->train.epochs, "Epochs")->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--batch-size", t->train.batch_size, "Images per step")->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--lr", t->train.lr, "Initial learning rate")->capture_default_str();
  train->add_option("--momentum", t->train.momentum, "SGD momentum")->capture_default_str();
  train->add_option("--weight-decay", t->train.weight_decay, "SGD weight decay")->capture_default_str();
  train->add_option("--crop-padding", t->train.crop_padding, "Random-crop padding (0: no crop)")->capture_default_str();
  train->add_flag("!--no-flip", t->train.flip, "No horizontal flips");
  train->add_option("--max-steps", t->train.max_steps, "Stop after this many steps in all (0: no limit)")->capture_default_str();
  train->add_option("--seed", t->train.seed, "Seed")->capture_default_str();
  train->add_option("--out", t->train.out_dir, "Run directory")->required();
  train->add_option("--log-every", t->log_every, "Progress line every N steps")->capture_default_str();
  train->add_flag("--no-resume", t->no_resume, "Start afresh even if RUN_DIR has a checkpoint");
  add_dist_options(train, t->dist);
  runners.push_back({train, [t] { run_train(*t); }});

  auto e = std::make_shared<EvalCli>();
  e->data.dataset.clear();
  auto* eval = lip->add_subcommand("eval",
                                   "Certify a saved LipConvNet (a run directory or its best/) on a test set: clean accuracy,\n"
                                   "certified accuracy at each --eps and the mean certificate, as one JSON line. Images are padded to\n"
                                   "the model's input side; the dataset is the model's unless --dataset says otherwise");
  eval->add_option("--model", e->model, "Directory with lipconvnet.json and model.safetensors")->required();
  e->data.add_to(eval, false);
  eval->add_option("--batch-size", e->batch_size, "Images per forward")->capture_default_str()->check(CLI::PositiveNumber);
  runners.push_back({eval, [e] { run_eval(*e); }});

  auto i = std::make_shared<InfoCli>();
  auto* info = lip->add_subcommand("info",
                                   "Print the layers of a LipConvNet and, as the last line, a JSON object with \"params\"\n"
                                   "(trainable parameters). Example: gsoft lipconv info --conv gs-soc --groups 4,2 --classes 100");
  i->arch.add_to(info);
  info->add_option("--classes", i->classes, "Classes")->capture_default_str();
  info->add_option("--input-size", i->input_size, "Input side (a multiple of 32)")->capture_default_str();
  info->add_option("--in-channels", i->in_channels, "Input channels")->capture_default_str();
  runners.push_back({info, [i] { run_info(*i); }});
}

}  // namespace gsoft::cli
