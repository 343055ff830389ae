// gsoft predict: logits and labels for every input, in input order, as JSON lines.
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/models/classifier.h"
#include "gsoft/train/batching.h"
#include "task_options.h"

namespace gsoft::cli {
namespace {

struct PredictCliOptions {
  std::string model, adapter, input, out;
  TaskOptions task;
  int64_t max_len = 0, batch_size = 64;
};

void run_predict(const PredictCliOptions& o) {
  LoadedClassifier clf = load_classifier(o.model, {}, o.adapter);
  const EncoderConfig& c = clf.config;
  if (!clf.missing.empty())
    std::cerr << "predict: warning: " << clf.missing.size() << " head tensors are not in the checkpoint, so the head is "
              << "random (first: " << clf.missing.front() << "); give --adapter with a trained head\n";
  data::TableFormat fmt;
  if (!o.task.task.empty()) {
    fmt = data::glue_task(o.task.task).format;
  } else {
    fmt.text_column = o.task.text_column;
    fmt.pair_column = o.task.pair_column;
    fmt.header = !o.task.no_header;
  }
  fmt.labelled = false;
  fmt.pairs = data::Pairs::AsWritten;  // a line without a pair is a single text
  fmt.skip_bad_rows = o.task.skip_bad_rows;
  const data::Dataset d = data::read_table(o.input, fmt);
  for (const auto& bad : d.bad_rows) std::cerr << "skipped " << bad << "\n";
  const int64_t max_len = clf.input_length(o.max_len);
  const BatchOptions batch = clf.batch_options();
  const torch::Tensor logits = predict_logits(*clf.model, encode_dataset(*clf.tokenizer, d, max_len), o.batch_size, batch);
  const std::vector<double> pred = predictions_from_logits(logits);
  std::string text;
  for (int64_t i = 0; i < logits.size(0); ++i) {
    const torch::Tensor row = logits[i].contiguous();
    nlohmann::json j = {{"logits", std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel())}};
    if (clf.regression()) j["label"] = pred[static_cast<size_t>(i)];
    else j["label"] = c.label_names.at(static_cast<size_t>(pred[static_cast<size_t>(i)]));
    text += j.dump() + "\n";
  }
  io::write_file_atomic(o.out, text);
  std::cerr << "predict: " << logits.size(0) << " predictions -> " << o.out << "\n";
}

}  // namespace

void setup_predict(CLI::App& app, Runners& runners) {
  auto o = std::make_shared<PredictCliOptions>();
  auto* cmd = app.add_subcommand(
      "predict",
      "Predict with a sequence classifier: one JSON line per input, in input order, with \"logits\" and \"label\".\n"
      "Works for a plain Hugging Face sequence-classification checkpoint, a merged one, or a base plus --adapter.\n"
      "Inputs: .csv/.tsv with a header (choose columns), or .jsonl with \"text\" and, on the lines that are pairs,\n"
      "\"text_pair\" (a line may be either).\n"
      "Example: gsoft predict --model roberta-base --adapter runs/sst2-gsoft/best --input reviews.jsonl --out preds.jsonl");
  cmd->add_option("--model", o->model, "Hugging Face checkpoint directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter", o->adapter, "Adapter directory from gsoft train")->check(CLI::ExistingDirectory);
  cmd->add_option("--input", o->input, "Input file (.csv, .tsv or .jsonl)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "Output JSON lines")->required();
  cmd->add_option("--task", o->task.task, "Read --input in this GLUE task's layout");
  cmd->add_option("--text-column", o->task.text_column, "Column of the text")->capture_default_str();
  cmd->add_option("--pair-column", o->task.pair_column, "CSV/TSV: column of the second text of a pair; .jsonl: the pair's field "
                                                        "(default text_pair, read from each line that has it)");
  cmd->add_flag("--no-header", o->task.no_header, "CSV/TSV input has no header row; columns are 0-based indices");
  cmd->add_flag("--skip-bad-rows", o->task.skip_bad_rows, "Skip malformed rows (each is reported) instead of stopping");
  cmd->add_option("--max-len", o->max_len, "Longest input in tokens, truncated longest-first (default: the model's positions)");
  cmd->add_option("--batch-size", o->batch_size, "Examples per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  runners.push_back({cmd, [o] { run_predict(*o); }});
}

}  // namespace gsoft::cli
