// gsoft eval: metrics of a model (with or without a trained adapter) on labelled files.
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "gsoft/models/classifier.h"
#include "gsoft/train/trainer.h"
#include "task_options.h"

namespace gsoft::cli {
namespace {

struct EvalCliOptions {
  std::string model, adapter;
  TaskOptions task;
  int64_t max_len = 0, batch_size = 64;
};

void run_eval(const EvalCliOptions& o) {
  const ResolvedTask task = resolve_task(o.task);
  if (task.eval_files.empty()) throw CLI::ValidationError("--eval-file", "no file to evaluate (give --eval-file, or --task with --data)");
  // --labels and --regression describe the model's outputs when its config does not (a base
  // checkpoint's id2label is LABEL_0, LABEL_1, ...); a GLUE task keeps the model's own names.
  ClassifierOptions copt;
  copt.label_names = o.task.labels;
  copt.regression = o.task.regression;
  LoadedClassifier clf = load_classifier(o.model, copt, o.adapter);
  const EncoderConfig& c = clf.config;
  if (!clf.missing.empty())
    std::cerr << "eval: warning: " << clf.missing.size() << " head tensors are not in the checkpoint, so the head is "
              << "random (first: " << clf.missing.front() << "); give --adapter with a trained head\n";
  data::TableFormat fmt = task.format;
  fmt.regression = clf.regression();
  if (!fmt.regression) fmt.label_names = c.label_names;
  const int64_t max_len = clf.input_length(o.max_len);
  const BatchOptions batch = clf.batch_options();
  for (const auto& file : task.eval_files) {
    const data::Dataset d = data::read_table(file, fmt);
    for (const auto& bad : d.bad_rows) std::cerr << "skipped " << bad << "\n";
    const EvalInfo e = evaluate_classifier(*clf.model, encode_dataset(*clf.tokenizer, d, max_len), batch, task.metrics,
                                           o.batch_size);
    nlohmann::json j = {{"file", file}, {"examples", d.examples.size()}, {"loss", e.loss}};
    for (const auto& [k, v] : e.metrics) j[k] = v;
    std::cout << j.dump() << std::endl;
  }
}

}  // namespace

void setup_eval(CLI::App& app, Runners& runners) {
  auto o = std::make_shared<EvalCliOptions>();
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate a sequence classifier on labelled files: one JSON line per file with the loss and the task's metrics.\n"
      "Examples:\n"
      "  gsoft eval --model roberta-base --adapter runs/sst2-gsoft/best --task sst2 --data glue/SST-2\n"
      "  gsoft eval --model merged-model --eval-file dev.csv --text-column review --label-column stars");
  cmd->add_option("--model", o->model, "Hugging Face checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter", o->adapter, "Adapter directory from gsoft train (its config.json gives labels and head)")
      ->check(CLI::ExistingDirectory);
  add_task_options(cmd, o->task, false);
  cmd->add_option("--max-len", o->max_len, "Longest input in tokens (default: the model's positions)");
  cmd->add_option("--batch-size", o->batch_size, "Examples per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  runners.push_back({cmd, [o] { run_eval(*o); }});
}

}  // namespace gsoft::cli
