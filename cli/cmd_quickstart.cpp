// gsoft quickstart: the main job. Fine-tunes the shipped pretrained encoder with GSOFT on the Pang
// & Lee sentence polarity task (fixed 80/10/10 split), reports test accuracy and cost, saves the
// adapter, merges it, and checks that the merged model predicts what the adapted one does.
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "adapter_options.h"
#include "commands.h"
#include "distributed.h"
#include "polarity.h"
#include "gsoft/adapters/inject.h"
#include "gsoft/core/runtime.h"
#include "gsoft/data/metrics.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/models/classifier.h"
#include "gsoft/train/trainer.h"
#include "progress.h"

namespace gsoft::cli {
namespace fs = std::filesystem;

namespace {

struct QuickstartOptions {
  std::string model = kShippedModel;
  std::string data = kPolarityData;
  std::string out = "runs/quickstart";
  AdapterOptions adapter;
  TrainOptions train;
  bool from_scratch = false;
  DistCliOptions dist;
};

void run_quickstart(QuickstartOptions& o) {
  const auto group = launch_or_join(o.dist);
  if (!group) return;  // this process launched the workers
  const data::Split split = read_polarity_split(o.data);
  if (group->is_main())
    std::cerr << "quickstart: polarity sentences: " << split.train.examples.size() << " train, " << split.dev.examples.size()
            << " dev, " << split.test.examples.size() << " test (within each class, k % 10 == 0 test, 1 dev)\n";

  ClassifierOptions copt;
  copt.label_names = {"negative", "positive"};
  LoadedClassifier clf = load_classifier(o.model, copt);
  if (o.from_scratch) init_weights(*clf.model);
  AdapterConfig adapter = to_adapter_config(o.adapter);
  train_missing_modules(adapter, clf.missing);
  const InjectionReport report = inject_adapters(*clf.model, adapter);
  if (group->is_main())
    std::cerr << "quickstart: " << (o.from_scratch ? "randomly initialised " : "pretrained ") << o.model << ", "
            << to_string(adapter.method) << ": " << report.trainable_params << " trainable of " << report.total_params
            << " parameters\n";

  const int64_t max_len = clf.input_length(128);
  TrainData d;
  d.train = encode_dataset(*clf.tokenizer, split.train, max_len);
  d.eval = encode_dataset(*clf.tokenizer, split.dev, max_len);
  d.batch = clf.batch_options();
  d.metrics = {data::Metric::Accuracy};
  TrainOptions t = o.train;
  t.out_dir = o.out;
  t.group = group.get();
  const TrainCallbacks cb = callbacks_for_rank(*group, console_callbacks("quickstart", t.log_every));
  const TrainResult r = train_classifier(*clf.model, adapter, d, t, cb);
  if (other_rank_done(*group, r.interrupted)) return;  // rank 0 reports
  if (r.interrupted) {
    std::cerr << "quickstart: interrupted at step " << r.end_step << "; checkpoint saved. Run the same command with "
                 "--resume to continue.\n";
    throw ExitStatus{130};
  }
  const fs::path best = fs::path(o.out) / "best";
  io::write_file_atomic((best / "config.json").string(), clf.config_json);

  // Test accuracy of the best adapter, reloaded from disk as a user would.
  const auto test = encode_dataset(*clf.tokenizer, split.test, max_len);
  LoadedClassifier adapted = load_classifier(o.model, {}, best.string());
  const torch::Tensor adapted_logits = predict_logits(*adapted.model, test, 64, d.batch);
  std::vector<double> gold;
  for (const auto& e : test) gold.push_back(e.label);
  const auto adapted_pred = predictions_from_logits(adapted_logits);
  const double test_acc = data::accuracy(adapted_pred, gold);

  // Merge and compare predictions.
  const fs::path merged = fs::path(o.out) / "merged";
  io::merge_to(o.model, best.string(), merged.string());
  LoadedClassifier plain = load_classifier(merged.string());
  const auto merged_pred = predictions_from_logits(predict_logits(*plain.model, test, 64, d.batch));
  const bool agrees = merged_pred == adapted_pred;

  std::cout << "test accuracy     " << test_acc << " (" << test.size() << " sentences)\n"
            << "trainable params  " << report.trainable_params << " (" << report.adapter_params << " in the adapter)\n"
            << "training time     " << r.train_seconds << " s\n"
            << "peak memory       " << peak_rss_mb() << " MB\n"
            << "adapter           " << best.string() << "\n"
            << "merged model      " << merged.string() << (agrees ? " (same test predictions)" : " (PREDICTIONS DIFFER)")
            << "\n";
  const nlohmann::json j = {{"task", "polarity"}, {"method", to_string(adapter.method)},
                            {"dev_accuracy", r.best.metrics.at("accuracy")}, {"test_accuracy", test_acc},
                            {"trainable_params", report.trainable_params}, {"train_seconds", r.train_seconds},
                            {"epochs", static_cast<double>(r.end_step) / static_cast<double>((split.train.examples.size() + t.batch_size - 1) / t.batch_size)},
                            {"peak_rss_mb", peak_rss_mb()}, {"merged_agrees", agrees}};
  std::cout << j.dump() << std::endl;
}

}  // namespace

void setup_quickstart(CLI::App& app, Runners& runners) {
  auto o = std::make_shared<QuickstartOptions>();
  o->train.epochs = 10;
  o->train.batch_size = 32;
  o->train.lr = 2e-3;
  o->train.log_every = 50;
  o->train.resume = false;
  auto* cmd = app.add_subcommand(
      "quickstart",
      "The main job: fine-tune gsoft's shipped pretrained encoder (models/polarity-bert) with GSOFT on the Pang &\n"
      "Lee sentence polarity task (data/polarity, fetched by scripts/setup.sh; fixed 80/10/10 split), print test\n"
      "accuracy, trainable parameters, training time and peak memory, save the adapter, merge it, and check that\n"
      "the merged model predicts the same labels. The last line is one JSON object.\n"
      "Example: gsoft quickstart --method lora --r 8 --lr 1e-3");
  cmd->add_option("--model", o->model, "Pretrained checkpoint directory")->capture_default_str();
  cmd->add_option("--data", o->data, "polarity-en-pang&lee2.csv")->capture_default_str();
  cmd->add_option("--out", o->out, "Run directory")->capture_default_str();
  add_adapter_options(cmd, o->adapter);
  cmd->add_option("--epochs", o->train.epochs, "Epochs")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-steps", o->train.max_steps, "Stop after this many steps (a quick check; 0: --epochs)");
  cmd->add_option("--batch-size", o->train.batch_size, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lr", o->train.lr, "Learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--head-lr", o->train.head_lr, "Head learning rate (default: --lr)");
  cmd->add_option("--seed", o->train.seed, "Seed")->capture_default_str();
  cmd->add_option("--log-every", o->train.log_every, "Progress line every N steps")->capture_default_str();
  cmd->add_flag("--resume", o->train.resume, "Continue an interrupted run from OUT/checkpoint.safetensors (default: start afresh)");
  cmd->add_flag("--from-scratch", o->from_scratch, "Start from random weights (the baseline: use with --method full)");
  add_dist_options(cmd, o->dist);
  runners.push_back({cmd, [o] { run_quickstart(*o); }});
}

}  // namespace gsoft::cli
