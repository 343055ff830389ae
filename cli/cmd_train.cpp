// gsoft train: fine-tune a Hugging Face BERT/RoBERTa checkpoint on a GLUE task or a custom file
// with an adapter, writing the adapter (head included), metrics and a resumable checkpoint.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "adapter_options.h"
#include "commands.h"
#include "distributed.h"
#include "gsoft/adapters/inject.h"
#include "gsoft/core/runtime.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/models/classifier.h"
#include "gsoft/train/trainer.h"
#include "json_config.h"
#include "progress.h"
#include "task_options.h"

namespace gsoft::cli {
namespace fs = std::filesystem;

namespace {

struct TrainCliOptions {
  std::string model, out;
  TaskOptions task;
  AdapterOptions adapter;
  TrainOptions train;
  std::string head = "huggingface";
  double head_dropout = -1;
  double dropout = -1;
  int64_t max_len = 0;
  DistCliOptions dist;
  bool no_resume = false;
  CLI::App* cmd = nullptr;
};

data::Dataset read_or_explain(const std::string& path, const data::TableFormat& f, const char* what) {
  if (path.empty()) throw CLI::ValidationError(what, std::string("a file is required (or --task with --data)"));
  data::Dataset d = data::read_table(path, f);
  for (const auto& bad : d.bad_rows) std::cerr << "skipped " << bad << "\n";
  if (d.examples.empty()) throw std::runtime_error(path + ": no usable rows");
  return d;
}

void run_train(TrainCliOptions& o) {
  const auto group = launch_or_join(o.dist);
  if (!group) return;  // this process launched the workers
  const bool main_rank = group->is_main();
  const ResolvedTask task = resolve_task(o.task);
  data::TableFormat fmt = task.format;
  const data::Dataset train = read_or_explain(task.train_file, fmt, "--train-file");
  fmt.label_names = train.label_names;  // dev files use the training file's classes
  const bool pairs = std::any_of(train.examples.begin(), train.examples.end(),
                                 [](const data::Example& e) { return e.text_pair.has_value(); });
  if (pairs) fmt.pairs = data::Pairs::Required;  // a model trained on pairs is evaluated on pairs
  std::vector<data::Dataset> evals;
  for (const auto& f : task.eval_files) evals.push_back(read_or_explain(f, fmt, "--eval-file"));

  ClassifierOptions copt;
  copt.label_names = train.label_names;
  copt.regression = train.regression;
  copt.head = o.head == "authors_glue" ? HeadKind::AuthorsGlue : HeadKind::HuggingFace;
  copt.head_dropout = o.head_dropout;
  copt.dropout = o.dropout;
  LoadedClassifier clf = load_classifier(o.model, copt);
  if (!clf.missing.empty())
    std::cerr << "train: " << clf.missing.size() << " head tensors are not in the checkpoint and start from random: "
              << clf.missing.front() << (clf.missing.size() > 1 ? ", ..." : "") << "\n";
  AdapterConfig adapter = to_adapter_config(o.adapter);
  for (const auto& m : train_missing_modules(adapter, clf.missing))
    std::cerr << "train: the checkpoint has no " << m << "; it trains in full with the adapter (modules_to_save)\n";
  const InjectionReport report = inject_adapters(*clf.model, adapter);

  const int64_t max_len = clf.input_length(o.max_len);
  TrainData data;
  data.train = encode_dataset(*clf.tokenizer, train, max_len);
  if (!evals.empty()) data.eval = encode_dataset(*clf.tokenizer, evals[0], max_len);
  data.batch = clf.batch_options();
  data.metrics = task.metrics;

  TrainOptions topt = o.train;
  topt.out_dir = o.out;
  topt.resume = !o.no_resume;
  topt.group = group.get();
  if (main_rank) {
    fs::create_directories(o.out);
    io::write_file_atomic((fs::path(o.out) / "run_config.json").string(), resolved_options(o.cmd).dump(2) + "\n");
  }
  if (main_rank) std::cerr << "train: " << task.name << ", " << train.examples.size() << " training examples, "
            << data.eval.size() << " evaluation examples, " << train.num_labels() << (train.regression ? " output" : " classes")
            << ", max length " << max_len << "\n"
            << "train: " << to_string(adapter.method) << " on " << report.adapted.size() << " modules: "
            << report.trainable_params << " trainable parameters (" << report.adapter_params << " in adapters) of "
            << report.total_params << "\n";

  if (group->world_size() > 1 && main_rank)
    std::cerr << "train: data parallel over " << group->world_size() << " ranks, " << o.train.batch_size
              << " examples per global batch\n";
  const TrainCallbacks cb = callbacks_for_rank(*group, console_callbacks("train", topt.log_every));
  const TrainResult r = train_classifier(*clf.model, adapter, data, topt, cb);
  if (other_rank_done(*group, r.interrupted)) return;  // rank 0 reports

  for (const char* dir : {"adapter", "best"})
    if (fs::exists(fs::path(o.out) / dir)) io::write_file_atomic((fs::path(o.out) / dir / "config.json").string(), clf.config_json);
  if (r.interrupted) {
    std::cerr << "train: interrupted at step " << r.end_step << " of " << r.total_steps
              << "; checkpoint saved. Run the same command again to resume.\n";
    throw ExitStatus{130};
  }
  nlohmann::json summary = {{"task", task.name}, {"method", to_string(adapter.method)},
                            {"trainable_params", report.trainable_params}, {"adapter_params", report.adapter_params},
                            {"steps", r.end_step}, {"train_seconds", r.train_seconds},
                            {"peak_rss_mb", peak_rss_mb()}, {"out", o.out}, {"world_size", group->world_size()}};
  if (group->world_size() > 1 && r.end_step > r.start_step) {
    const auto steps = static_cast<double>(r.end_step - r.start_step);
    summary["all_reduce_bytes_per_step"] = static_cast<double>(r.all_reduce_bytes) / steps;
    summary["all_reduce_ms_per_step"] = 1000.0 * r.all_reduce_seconds / steps;
  }
  if (r.best.step >= 0) summary["best"] = {{"step", r.best.step}, {"loss", r.best.loss}, {"metrics", r.best.metrics}};
  io::write_file_atomic((fs::path(o.out) / "summary.json").string(), summary.dump(2) + "\n");
  std::cout << summary.dump() << std::endl;
}

}  // namespace

void setup_train(CLI::App& app, Runners& runners) {
  auto o = std::make_shared<TrainCliOptions>();
  auto* cmd = app.add_subcommand(
      "train",
      "Fine-tune a Hugging Face BERT or RoBERTa checkpoint (config.json, model.safetensors, tokenizer.json) for\n"
      "sequence classification or regression with an adapter. RUN_DIR receives adapter/ (PEFT layout, head\n"
      "included, plus config.json), best/ (the best evaluation), metrics.jsonl, run_config.json, summary.json and\n"
      "checkpoint.safetensors. Running the same command again resumes; Ctrl-C saves a checkpoint first.\n"
      "Examples:\n"
      "  gsoft train --model roberta-base --task sst2 --data glue/SST-2 --method gsoft --block-size 8 \\\n"
      "      --lr 8e-4 --epochs 3 --batch-size 32 --max-len 128 --out runs/sst2-gsoft\n"
      "  gsoft train --model my-bert --train-file train.csv --eval-file dev.csv --text-column review \\\n"
      "      --label-column stars --out runs/reviews\n"
      "  gsoft train --config run.json          (any option as {\"option-name\": value})");
  o->cmd = cmd;
  add_json_config(cmd);
  cmd->add_option("--model", o->model, "Hugging Face checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--out", o->out, "Run directory")->required();
  add_task_options(cmd, o->task, true);
  add_adapter_options(cmd, o->adapter);
  auto& t = o->train;
  cmd->add_option("--epochs", t.epochs, "Training epochs")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-steps", t.max_steps, "Stop after this many steps instead (0: use --epochs)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", t.batch_size, "Examples per step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lr", t.lr, "Learning rate of the adapters (of all weights with --method full)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--head-lr", t.head_lr, "Learning rate of the classifier head (default: --lr)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--weight-decay", t.weight_decay, "Decoupled weight decay (not on biases and LayerNorm)")->capture_default_str();
  cmd->add_option("--warmup-steps", t.warmup_steps, "Linear warm-up steps (default: --warmup-ratio of all steps)");
  cmd->add_option("--warmup-ratio", t.warmup_ratio, "Warm-up share of all steps")->capture_default_str();
  cmd->add_option("--max-grad-norm", t.max_grad_norm, "Gradient clipping norm (0: off)")->capture_default_str();
  cmd->add_option("--eval-every", t.eval_every, "Evaluate every N steps (0: every epoch)")->capture_default_str();
  cmd->add_option("--checkpoint-every", t.checkpoint_every, "Checkpoint every N steps (0: at each evaluation)")
      ->capture_default_str();
  cmd->add_option("--log-every", t.log_every, "Progress line and metrics.jsonl entry every N steps")->capture_default_str();
  cmd->add_option("--seed", t.seed, "Seed of initialisation, data order and dropout")->capture_default_str();
  cmd->add_option("--max-len", o->max_len, "Longest input in tokens, truncated longest-first (default: the model's positions)");
  cmd->add_option("--head", o->head, "huggingface (BertFor/RobertaForSequenceClassification) or authors_glue "
                                     "(Linear-ReLU-Dropout-Linear on the first token)")
      ->capture_default_str()->check(CLI::IsMember({"huggingface", "authors_glue"}));
  cmd->add_option("--head-dropout", o->head_dropout, "Head dropout (default: the config's hidden_dropout_prob)");
  cmd->add_option("--dropout", o->dropout, "Hidden and attention dropout of the encoder (default: the config's); 0 "
                                           "makes runs exactly comparable, e.g. across --nproc")
      ->check(CLI::Range(0.0, 0.999));
  cmd->add_flag("--no-resume", o->no_resume, "Start afresh even if RUN_DIR has a checkpoint");
  add_dist_options(cmd, o->dist);
  runners.push_back({cmd, [o] { run_train(*o); }});
}

}  // namespace gsoft::cli
