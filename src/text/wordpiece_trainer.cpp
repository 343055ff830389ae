#include "gsoft/text/wordpiece_trainer.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "gsoft/core/error.h"
#include "gsoft/text/tokenizer.h"
#include "text/unicode.h"

namespace gsoft {
namespace {

using json = nlohmann::json;
const std::vector<std::string> kSpecials{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

json tokenizer_json(const std::vector<std::string>& vocab_list, bool lowercase) {
  json vocab = json::object();
  for (size_t i = 0; i < vocab_list.size(); ++i) vocab[vocab_list[i]] = i;
  json added = json::array();
  for (const auto& s : kSpecials)
    added.push_back({{"id", vocab[s]}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  auto special = [&](const char* t, int type) { return json{{"SpecialToken", {{"id", t}, {"type_id", type}}}}; };
  auto seq = [](const char* t, int type) { return json{{"Sequence", {{"id", t}, {"type_id", type}}}}; };
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true}, {"strip_accents", nullptr},
            {"lowercase", lowercase}}},
          {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single", {special("[CLS]", 0), seq("A", 0), special("[SEP]", 0)}},
            {"pair", {special("[CLS]", 0), seq("A", 0), special("[SEP]", 0), seq("B", 1), special("[SEP]", 1)}},
            {"special_tokens",
             {{"[CLS]", {{"id", "[CLS]"}, {"ids", {vocab["[CLS]"]}}, {"tokens", {"[CLS]"}}}},
              {"[SEP]", {{"id", "[SEP]"}, {"ids", {vocab["[SEP]"]}}, {"tokens", {"[SEP]"}}}}}}}},
          {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
          {"model",
           {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
            {"max_input_chars_per_word", 100}, {"vocab", vocab}}}};
}

template <typename Map>
std::vector<std::pair<std::string, int64_t>> by_count(const Map& m) {
  std::vector<std::pair<std::string, int64_t>> v(m.begin(), m.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  return v;
}

}  // namespace

std::string train_wordpiece(const std::vector<std::string>& texts, const WordPieceTrainerOptions& o) {
  // Normalise and split exactly as the finished tokenizer will.
  const Tokenizer splitter = Tokenizer::from_json(tokenizer_json(kSpecials, o.lowercase).dump(), "wordpiece trainer");
  std::unordered_map<std::string, int64_t> words;
  for (const auto& t : texts)
    for (auto& w : splitter.pre_tokenize(t)) ++words[w];

  std::map<std::u32string, int64_t> chars;
  for (const auto& [w, n] : words)
    for (char32_t c : text::utf8_decode(w)) chars[std::u32string(1, c)] += n;
  std::vector<std::string> vocab = kSpecials;
  std::unordered_set<std::string> have(vocab.begin(), vocab.end());
  auto add = [&](const std::string& t) {
    if (have.insert(t).second) vocab.push_back(t);
  };
  for (const auto& [c, n] : chars)
    if (n >= o.min_frequency) add(text::utf8_encode(c)), add("##" + text::utf8_encode(c));
  GSOFT_CHECK(static_cast<int64_t>(vocab.size()) < o.vocab_size, "train_wordpiece: vocab_size ", o.vocab_size,
              " does not exceed the ", vocab.size(), " special tokens and characters of the corpus");

  const auto ranked = by_count(words);
  const int64_t budget = o.vocab_size - static_cast<int64_t>(vocab.size());
  const int64_t piece_budget = static_cast<int64_t>(o.subword_share * static_cast<double>(budget));
  const int64_t word_budget = budget - piece_budget;
  // Pieces come from the words beyond the whole-word budget: their endings and beginnings.
  std::unordered_map<std::string, int64_t> pieces;
  for (size_t i = static_cast<size_t>(std::min<int64_t>(word_budget, static_cast<int64_t>(ranked.size()))); i < ranked.size(); ++i) {
    const std::u32string w = text::utf8_decode(ranked[i].first);
    for (size_t len = 2; len <= 5 && len < w.size(); ++len) {
      pieces["##" + text::utf8_encode(w.substr(w.size() - len))] += ranked[i].second;
      pieces[text::utf8_encode(w.substr(0, len + 1))] += ranked[i].second;
    }
  }
  int64_t added_pieces = 0;
  for (const auto& [p, n] : by_count(pieces)) {
    if (added_pieces >= piece_budget || n < o.min_frequency) break;
    if (!have.count(p)) add(p), ++added_pieces;
  }
  for (const auto& [w, n] : ranked) {
    if (static_cast<int64_t>(vocab.size()) >= o.vocab_size || n < o.min_frequency) break;
    add(w);
  }
  return tokenizer_json(vocab, o.lowercase).dump();
}

}  // namespace gsoft
