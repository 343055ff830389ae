#include "gsoft/data/corpus.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <sstream>
#include <unordered_set>

#include "io/file_util.h"

namespace gsoft::data {
namespace {

bool has_suffix(const std::string& s, const char* suffix) {
  const std::string x(suffix);
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> w;
  std::istringstream in(text);
  std::string s;
  while (in >> s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    w.push_back(std::move(s));
  }
  return w;
}

uint64_t hash_run(const std::vector<std::string>& w, size_t begin, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = begin; i < begin + len; ++i) h = (h ^ std::hash<std::string>{}(w[i])) * 1099511628211ull;
  return h ^ len;
}

}  // namespace

std::vector<std::string> read_corpus(const std::string& path, const TableFormat& table) {
  if (has_suffix(path, ".csv") || has_suffix(path, ".tsv") || has_suffix(path, ".jsonl") || has_suffix(path, ".json")) {
    TableFormat f = table;
    f.labelled = false;
    f.pair_column.clear();
    std::vector<std::string> out;
    for (auto& e : read_table(path, f).examples) out.push_back(std::move(e.text));
    return out;
  }
  const std::string text = io::read_text_file(path);
  std::vector<std::string> out;
  std::string para, line;
  std::istringstream in(text);
  int64_t line_no = 0;
  auto flush = [&] {
    if (para.find_first_not_of(" \t\r") != std::string::npos) out.push_back(para);
    para.clear();
  };
  while (io::read_line(in, line, io::kMaxLineBytes, path, ++line_no)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) flush();
    else para += (para.empty() ? "" : " ") + line;
  }
  flush();
  return out;
}

size_t remove_overlaps(std::vector<std::string>& texts, const std::vector<std::string>& held_out, size_t n) {
  std::unordered_set<uint64_t> runs;
  std::vector<size_t> lengths;  // run lengths to test: n, and every shorter held-out length
  for (const auto& h : held_out) {
    const auto w = words_of(h);
    if (w.size() < std::min<size_t>(n, 6)) continue;  // a few common words are no leak
    const size_t len = std::min(n, w.size());
    if (std::find(lengths.begin(), lengths.end(), len) == lengths.end()) lengths.push_back(len);
    for (size_t i = 0; i + len <= w.size(); ++i) runs.insert(hash_run(w, i, len));
  }
  const size_t before = texts.size();
  texts.erase(std::remove_if(texts.begin(), texts.end(),
                             [&](const std::string& t) {
                               const auto w = words_of(t);
                               for (size_t len : lengths)
                                 for (size_t i = 0; i + len <= w.size(); ++i)
                                   if (runs.count(hash_run(w, i, len))) return true;
                               return false;
                             }),
              texts.end());
  return before - texts.size();
}

}  // namespace gsoft::data
