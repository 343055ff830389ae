#include "gsoft/data/tasks.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include "io/file_util.h"

namespace gsoft::data {
namespace {

constexpr size_t kMaxRecordBytes = 16u << 20;

std::string at_line(const std::string& path, int64_t line) { return path + ":" + std::to_string(line) + ": "; }

struct Record {
  std::vector<std::string> fields;
  int64_t line = 0;
};

// Splits delimited text into records. With quoting, RFC 4180: a quoted field may hold the
// delimiter, newlines and doubled quotes. \r\n ends a record like \n.
std::vector<Record> split_records(const std::string& text, size_t begin, char delim, bool quoting, const std::string& path) {
  std::vector<Record> out;
  Record rec;
  std::string field;
  int64_t line = 1;
  rec.line = 1;
  size_t record_bytes = 0;
  bool in_quotes = false, field_started = false, was_quoted = false;
  auto end_field = [&] {
    rec.fields.push_back(std::move(field));
    field.clear();
    field_started = was_quoted = false;
  };
  auto end_record = [&] {
    end_field();
    // A blank line is not a record.
    if (!(rec.fields.size() == 1 && rec.fields[0].empty())) out.push_back(std::move(rec));
    rec = Record{};
    rec.line = line;
    record_bytes = 0;
  };
  for (size_t i = begin; i < text.size(); ++i) {
    const char c = text[i];
    if (++record_bytes > kMaxRecordBytes)
      throw std::runtime_error(at_line(path, rec.line) + "row longer than " + std::to_string(kMaxRecordBytes) +
                               " bytes (an unclosed quote?)");
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') { field.push_back('"'); ++i; }
        else in_quotes = false;
      } else {
        if (c == '\n') ++line;
        field.push_back(c);
      }
      continue;
    }
    if (c == '\n' || (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
      if (c == '\r') ++i;
      ++line;
      end_record();
    } else if (c == delim) {
      end_field();
    } else if (quoting && c == '"' && !field_started) {
      in_quotes = was_quoted = field_started = true;
    } else {
      field.push_back(c);
      field_started = true;
    }
  }
  if (in_quotes) throw std::runtime_error(at_line(path, rec.line) + "quoted field never closed");
  if (!field.empty() || !rec.fields.empty()) end_record();
  return out;
}

bool parse_float(const std::string& s, float& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  out = static_cast<float>(v);
  return true;
}

bool is_integer(const std::string& s) {
  if (s.empty()) return false;
  size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// Raw rows: the chosen fields of each row as strings, label included.
struct RawRow {
  std::string text, label;
  std::optional<std::string> pair;
  int64_t line = 0;
};

int column_index(const std::vector<std::string>& header, const std::string& column, bool has_header,
                 const std::string& path, const char* what) {
  if (!has_header) {
    if (!is_integer(column) || column[0] == '-')
      throw std::runtime_error(path + ": " + what + " column '" + column + "' must be a 0-based index for a file without a header");
    if (column.size() > 6) throw std::runtime_error(path + ": " + what + " column index " + column + " is too large");
    return std::stoi(column);
  }
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == column) return static_cast<int>(i);
  std::string names;
  for (const auto& h : header) names += (names.empty() ? "" : ", ") + h;
  throw std::runtime_error(path + ": no " + what + " column '" + column + "' in the header (columns: " + names + ")");
}

std::vector<RawRow> read_delimited(const std::string& path, const std::string& text, size_t begin, char delim,
                                   const TableFormat& f, std::vector<std::string>& bad) {
  std::vector<Record> records = split_records(text, begin, delim, f.quoting, path);
  std::vector<std::string> header;
  size_t first = 0;
  if (f.header) {
    if (records.empty()) throw std::runtime_error(path + ": empty file, expected a header row");
    header = records[0].fields;
    first = 1;
  }
  const int ti = column_index(header, f.text_column, f.header, path, "text");
  const int pi = f.pair_column.empty() ? -1 : column_index(header, f.pair_column, f.header, path, "text pair");
  const int li = f.labelled ? column_index(header, f.label_column, f.header, path, "label") : -1;
  const size_t needed = static_cast<size_t>(std::max({ti, pi, li})) + 1;
  std::vector<RawRow> rows;
  for (size_t r = first; r < records.size(); ++r) {
    const Record& rec = records[r];
    if (rec.fields.size() < needed || (f.header && rec.fields.size() != header.size())) {
      const size_t expected = f.header ? header.size() : needed;
      bad.push_back(at_line(path, rec.line) + "expected " + std::string(f.header ? "" : "at least ") +
                    std::to_string(expected) + " columns, found " + std::to_string(rec.fields.size()));
      continue;
    }
    RawRow row;
    row.line = rec.line;
    row.text = rec.fields[static_cast<size_t>(ti)];
    if (pi >= 0) row.pair = rec.fields[static_cast<size_t>(pi)];
    if (li >= 0) row.label = rec.fields[static_cast<size_t>(li)];
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<RawRow> read_jsonl(const std::string& path, const std::string& text, size_t begin, const TableFormat& f,
                               std::vector<std::string>& bad) {
  const std::string pair_key = f.pair_column.empty() ? "text_pair" : f.pair_column;
  std::vector<RawRow> rows;
  int64_t line = 0;
  size_t pos = begin;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    ++line;
    const std::string_view view(text.data() + pos, nl - pos);
    pos = nl + 1;
    if (view.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (view.size() > kMaxRecordBytes) {
      bad.push_back(at_line(path, line) + "line longer than " + std::to_string(kMaxRecordBytes) + " bytes");
      continue;
    }
    nlohmann::json j;
    try {
      j = io::parse_json(view.data(), view.data() + view.size(), at_line(path, line));
    } catch (const std::exception& e) {
      bad.push_back(e.what());
      continue;
    }
    auto field = [&](const std::string& key, std::string& out, bool allow_number) {
      if (!j.is_object() || !j.contains(key)) return false;
      const auto& v = j[key];
      if (v.is_string()) out = v.get<std::string>();
      else if (allow_number && v.is_number()) out = v.dump();  // integers print exactly, whatever their size
      else if (allow_number && v.is_boolean()) out = v.get<bool>() ? "1" : "0";
      else return false;
      return true;
    };
    RawRow row;
    row.line = line;
    if (!field(f.text_column, row.text, false)) {
      bad.push_back(at_line(path, line) + "no string field '" + f.text_column + "'");
      continue;
    }
    if (j.contains(pair_key)) {
      const auto& v = j[pair_key];
      if (!v.is_string()) {
        bad.push_back(at_line(path, line) + "field '" + pair_key + "' is " + v.dump() + ", expected a string");
        continue;
      }
      row.pair = v.get<std::string>();
    }
    if (f.labelled && !field(f.label_column, row.label, true)) {
      bad.push_back(at_line(path, line) + "no label field '" + f.label_column + "' (string, number or boolean)");
      continue;
    }
    rows.push_back(std::move(row));
  }
  // A pair named on the command line is required unless the caller takes each line as written.
  const bool any_pair = std::any_of(rows.begin(), rows.end(), [](const RawRow& r) { return r.pair.has_value(); });
  const bool required = f.pairs == Pairs::Required ||
                        (f.pairs == Pairs::AllOrNone && (any_pair || !f.pair_column.empty()));
  if (required) {
    const auto singles = std::stable_partition(rows.begin(), rows.end(), [](const RawRow& r) { return r.pair.has_value(); });
    for (auto it = singles; it != rows.end(); ++it)
      bad.push_back(at_line(path, it->line) + "no string field '" + pair_key + "'" +
                    (f.pairs == Pairs::Required ? " (the task is one of text pairs)"
                     : any_pair ? " (other lines are pairs; a labelled file is all single texts or all pairs)"
                                : ""));
    rows.erase(singles, rows.end());
  }
  return rows;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Dataset read_table(const std::string& path, const TableFormat& f) {
  const std::string text = io::read_text_file(path);
  const size_t begin = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  std::vector<std::string> bad;
  std::vector<RawRow> rows;
  const bool jsonl = f.delimiter == 0 && (ends_with(path, ".jsonl") || ends_with(path, ".json"));
  if (jsonl) rows = read_jsonl(path, text, begin, f, bad);
  else rows = read_delimited(path, text, begin, f.delimiter ? f.delimiter : ends_with(path, ".tsv") ? '\t' : ',', f, bad);

  Dataset d;
  d.origin = path;
  d.regression = f.regression;
  if (f.labelled && !f.regression) {
    d.label_names = f.label_names;
    if (d.label_names.empty()) {
      std::set<std::string> seen;
      for (const auto& r : rows) seen.insert(r.label);
      d.label_names.assign(seen.begin(), seen.end());
      const bool numeric = std::all_of(d.label_names.begin(), d.label_names.end(), is_integer);
      if (numeric)
        std::sort(d.label_names.begin(), d.label_names.end(),
                  [](const std::string& a, const std::string& b) {
                    // strtold saturates where stoll would throw on a 30-digit label
                    return std::strtold(a.c_str(), nullptr) < std::strtold(b.c_str(), nullptr);
                  });
    }
  }
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < d.label_names.size(); ++i) index[d.label_names[i]] = static_cast<int64_t>(i);
  for (auto& r : rows) {
    Example e;
    e.text = std::move(r.text);
    e.text_pair = std::move(r.pair);
    e.line = r.line;
    if (f.labelled) {
      if (f.regression) {
        if (!parse_float(r.label, e.label)) {
          bad.push_back(at_line(path, r.line) + "label '" + r.label + "' is not a finite number");
          continue;
        }
      } else {
        auto it = index.find(r.label);
        if (it == index.end()) {
          std::string names;
          for (const auto& n : d.label_names) names += (names.empty() ? "" : ", ") + n;
          bad.push_back(at_line(path, r.line) + "label '" + r.label + "' is not one of the classes (" + names + ")");
          continue;
        }
        e.label = static_cast<float>(it->second);
      }
    }
    d.examples.push_back(std::move(e));
  }
  if (!bad.empty() && !f.skip_bad_rows) {
    std::string msg = std::to_string(bad.size()) + " bad row(s); first: " + bad[0];
    if (bad.size() > 1) msg += "; last: " + bad.back();
    throw std::runtime_error(msg);
  }
  std::sort(bad.begin(), bad.end());
  d.bad_rows = std::move(bad);
  return d;
}

Split split_by_position(const Dataset& d) {
  Split s{d, d, d};
  for (Dataset* part : {&s.train, &s.dev, &s.test}) part->examples.clear(), part->bad_rows.clear();
  std::map<float, int64_t> seen;
  for (const auto& e : d.examples) {
    const int64_t k = d.regression ? seen[0]++ : seen[e.label]++;
    (k % 10 == 0 ? s.test : k % 10 == 1 ? s.dev : s.train).examples.push_back(e);
  }
  return s;
}

std::string to_string(Metric m) {
  switch (m) {
    case Metric::Accuracy: return "accuracy";
    case Metric::F1: return "f1";
    case Metric::Matthews: return "matthews";
    case Metric::Pearson: return "pearson";
    case Metric::Spearman: return "spearman";
  }
  return "?";
}

namespace {
std::vector<GlueTask> make_glue_tasks() {
  auto fmt = [](std::string text, std::string pair, std::string label, std::vector<std::string> names) {
    TableFormat f;
    f.text_column = std::move(text);
    f.pair_column = std::move(pair);
    f.label_column = std::move(label);
    f.quoting = false;  // GLUE's TSVs keep quotes as text
    f.delimiter = '\t';
    f.label_names = std::move(names);
    f.regression = f.label_names.empty();
    return f;
  };
  const std::vector<std::string> binary{"0", "1"}, entail2{"entailment", "not_entailment"};
  std::vector<GlueTask> t;
  TableFormat cola = fmt("3", "", "1", binary);  // no header: source, label, original label, sentence
  cola.header = false;
  t.push_back({"cola", cola, "train.tsv", {"dev.tsv"}, {Metric::Matthews, Metric::Accuracy}});
  t.push_back({"sst2", fmt("sentence", "", "label", binary), "train.tsv", {"dev.tsv"}, {Metric::Accuracy}});
  t.push_back({"mrpc", fmt("#1 String", "#2 String", "Quality", binary), "train.tsv", {"dev.tsv"},
               {Metric::Accuracy, Metric::F1}});
  t.push_back({"stsb", fmt("sentence1", "sentence2", "score", {}), "train.tsv", {"dev.tsv"},
               {Metric::Pearson, Metric::Spearman}});
  t.push_back({"qqp", fmt("question1", "question2", "is_duplicate", binary), "train.tsv", {"dev.tsv"},
               {Metric::Accuracy, Metric::F1}});
  t.push_back({"mnli", fmt("sentence1", "sentence2", "gold_label", {"entailment", "neutral", "contradiction"}),
               "train.tsv", {"dev_matched.tsv", "dev_mismatched.tsv"}, {Metric::Accuracy}});
  t.push_back({"qnli", fmt("question", "sentence", "label", entail2), "train.tsv", {"dev.tsv"}, {Metric::Accuracy}});
  t.push_back({"rte", fmt("sentence1", "sentence2", "label", entail2), "train.tsv", {"dev.tsv"}, {Metric::Accuracy}});
  t.push_back({"wnli", fmt("sentence1", "sentence2", "label", binary), "train.tsv", {"dev.tsv"}, {Metric::Accuracy}});
  return t;
}
}  // namespace

const GlueTask& glue_task(const std::string& name) {
  static const std::vector<GlueTask> tasks = make_glue_tasks();
  for (const auto& t : tasks)
    if (t.name == name) return t;
  std::string names;
  for (const auto& t : tasks) names += (names.empty() ? "" : ", ") + t.name;
  throw std::invalid_argument("unknown GLUE task '" + name + "' (known: " + names + ")");
}

std::vector<std::string> glue_task_names() {
  return {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"};
}

}  // namespace gsoft::data
