#pragma once
// Labelled text for sequence classification and regression: the GLUE tasks' TSV layouts, and
// generic CSV, TSV or JSONL files with the columns chosen by name or index.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gsoft::data {

struct Example {
  std::string text;
  std::optional<std::string> text_pair;
  float label = 0;    // class index, or the value of a regression target
  int64_t line = 0;   // 1-based line where the row starts in its file
};

struct Dataset {
  std::string origin;                    // the file
  std::vector<Example> examples;
  bool regression = false;
  std::vector<std::string> label_names;  // class index -> label as written in the file
  std::vector<std::string> bad_rows;     // "file:line: why", with TableFormat::skip_bad_rows
  int64_t num_labels() const { return regression ? 1 : static_cast<int64_t>(label_names.size()); }
};

// How lines with and without a second text mix in one JSON-lines file.
enum class Pairs {
  AllOrNone,  // a labelled file is all single texts or all pairs: a line missing its pair is a bad row
  AsWritten,  // each line as it is, single or pair (inputs to predict)
  Required,   // every line is a pair (evaluation files of a task trained on pairs)
};

struct TableFormat {
  // Column names, or 0-based indices when header is false. CSV/TSV: an empty pair_column means
  // single texts. JSON lines: the pair is read from each line that has the field, named
  // pair_column or, when that is empty, "text_pair"; `pairs` says whether a line may lack it.
  std::string text_column = "text";
  std::string pair_column;
  Pairs pairs = Pairs::AllOrNone;
  std::string label_column = "label";
  bool header = true;        // CSV/TSV: the first row names the columns
  bool quoting = true;       // CSV quotes ("a, b", "say ""hi"""); GLUE's TSVs have none
  // ',' or '\t'; 0 picks by extension: .tsv tab, .jsonl/.json JSON lines, anything else CSV.
  char delimiter = 0;
  bool regression = false;
  // Class order; empty: the distinct labels of the file, numerically if all are integers.
  std::vector<std::string> label_names;
  bool labelled = true;      // false: no label column is read (inputs to predict)
  bool skip_bad_rows = false;  // record bad rows in Dataset::bad_rows instead of throwing
};

// Throws std::runtime_error "file:line: ..." for a bad row (wrong column count, missing column,
// unknown class, unparsable number) unless skip_bad_rows, and for a missing header column (listing
// the header). A UTF-8 byte-order mark is skipped. Rows and fields are capped at 16 MB.
Dataset read_table(const std::string& path, const TableFormat& format);

// A fixed, stratified split: within each class, in file order, example k goes to test when
// k % 10 == 0, to dev when k % 10 == 1, and to train otherwise (80/10/10, balanced as the file).
struct Split {
  Dataset train, dev, test;
};
Split split_by_position(const Dataset& d);

enum class Metric { Accuracy, F1, Matthews, Pearson, Spearman };
std::string to_string(Metric m);  // "accuracy", "f1", "matthews", "pearson", "spearman"

struct GlueTask {
  std::string name;
  TableFormat format;
  std::string train_file;
  std::vector<std::string> eval_files;  // dev files; MNLI has matched and mismatched
  std::vector<Metric> metrics;          // the first selects the best checkpoint
};

// cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli (GLUE's TSVs, labels as in Hugging Face's
// `datasets`). Throws listing the names for an unknown one.
const GlueTask& glue_task(const std::string& name);
std::vector<std::string> glue_task_names();

}  // namespace gsoft::data
