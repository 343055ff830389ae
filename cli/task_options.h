#pragma once
// The flags that say where labelled text comes from, shared by train, eval and predict: a GLUE
// task directory, or any CSV/TSV/JSONL file with chosen columns.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gsoft/data/tasks.h"

namespace gsoft::cli {

struct TaskOptions {
  std::string task;        // a GLUE task name, or empty for a custom file
  std::string data_dir;    // GLUE: the directory with train.tsv / dev.tsv
  std::string train_file;  // overrides the task's; required without a task
  std::vector<std::string> eval_files;
  std::string text_column = "text", pair_column, label_column = "label";
  bool no_header = false, regression = false, skip_bad_rows = false;
  std::vector<std::string> labels;
  std::vector<std::string> metrics;
};

inline void add_task_options(CLI::App* cmd, TaskOptions& o, bool with_train) {
  std::string glue;
  for (const auto& n : data::glue_task_names()) glue += (glue.empty() ? "" : ", ") + n;
  cmd->add_option("--task", o.task, "GLUE task (" + glue + ") read from --data; omit for a custom file");
  cmd->add_option("--data", o.data_dir, "Directory of the GLUE task's TSV files (train.tsv, dev.tsv, ...)");
  if (with_train) cmd->add_option("--train-file", o.train_file, "Training file (.csv, .tsv or .jsonl); overrides the task's");
  cmd->add_option("--eval-file", o.eval_files, "Evaluation file(s); default: the task's dev file(s)");
  cmd->add_option("--text-column", o.text_column, "Custom files: column (name, or 0-based index with --no-header) of the text")
      ->capture_default_str();
  cmd->add_option("--pair-column", o.pair_column, "Custom CSV/TSV: column of the second text of a pair. .jsonl reads "
                                                "\"text_pair\" without this flag; this names another field");
  cmd->add_option("--label-column", o.label_column, "Custom files: column of the label")->capture_default_str();
  cmd->add_flag("--no-header", o.no_header, "Custom CSV/TSV files have no header row; columns are indices");
  cmd->add_flag("--regression", o.regression, "Custom files: the label is a number (one output, MSE loss)");
  cmd->add_option("--labels", o.labels, "Custom files: the classes in order (train: default the distinct labels, sorted; "
                                      "eval: names the model's outputs where its config does not)")
      ->delimiter(',');
  cmd->add_option("--metric", o.metrics, "accuracy, f1, matthews, pearson or spearman; the first picks the best checkpoint")
      ->delimiter(',')
      ->check(CLI::IsMember({"accuracy", "f1", "matthews", "pearson", "spearman"}));
  cmd->add_flag("--skip-bad-rows", o.skip_bad_rows, "Skip malformed rows (each is reported) instead of stopping");
}

struct ResolvedTask {
  std::string name;
  data::TableFormat format;
  std::string train_file;
  std::vector<std::string> eval_files;
  std::vector<data::Metric> metrics;
};

inline ResolvedTask resolve_task(const TaskOptions& o) {
  ResolvedTask r;
  auto in_data = [&](const std::string& f) { return (std::filesystem::path(o.data_dir) / f).string(); };
  if (!o.task.empty()) {
    const data::GlueTask& t = data::glue_task(o.task);
    if (o.data_dir.empty() && (o.train_file.empty() || o.eval_files.empty()))
      throw CLI::ValidationError("--data", "the directory of the " + o.task + " TSV files is required with --task");
    r.name = t.name;
    r.format = t.format;
    r.train_file = o.train_file.empty() ? in_data(t.train_file) : o.train_file;
    for (const auto& f : t.eval_files) r.eval_files.push_back(in_data(f));
    if (!o.eval_files.empty()) r.eval_files = o.eval_files;
    r.metrics = t.metrics;
  } else {
    r.name = "custom";
    r.format.text_column = o.text_column;
    r.format.pair_column = o.pair_column;
    r.format.label_column = o.label_column;
    r.format.header = !o.no_header;
    r.format.regression = o.regression;
    r.format.label_names = o.labels;
    r.train_file = o.train_file;
    r.eval_files = o.eval_files;
    r.metrics = {o.regression ? data::Metric::Pearson : data::Metric::Accuracy};
  }
  r.format.skip_bad_rows = o.skip_bad_rows;
  if (!o.metrics.empty()) {
    r.metrics.clear();
    for (const auto& m : o.metrics)
      for (auto k : {data::Metric::Accuracy, data::Metric::F1, data::Metric::Matthews, data::Metric::Pearson, data::Metric::Spearman})
        if (data::to_string(k) == m) r.metrics.push_back(k);
  }
  return r;
}

}  // namespace gsoft::cli
