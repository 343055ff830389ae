#include "gsoft/text/tokenizer.h"

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <unordered_map>

#include "io/file_util.h"
#include "text/unicode.h"

namespace gsoft {
namespace {

using json = nlohmann::json;
using U32 = std::u32string;
using text::utf8_decode;
using text::utf8_encode;

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw std::runtime_error(origin + ": " + what);
}

std::string type_of(const json& j, const std::string& origin, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail(origin, where + " has no \"type\" string: " + j.dump().substr(0, 200));
  return j["type"].get<std::string>();
}

// ------------------------------------------------------------------ normalizers
using Normalizer = std::function<U32(const U32&)>;

U32 strip_accents(const U32& s) {
  U32 d = text::normalize(s, text::NormalForm::NFD), out;
  out.reserve(d.size());
  for (char32_t c : d)
    if (!text::is_nonspacing_mark(c)) out.push_back(c);
  return out;
}

U32 bert_normalize(const U32& in, bool clean, bool chinese, bool strip, bool lower) {
  U32 s;
  s.reserve(in.size());
  for (char32_t c : in) {
    if (clean) {
      const bool keep_ws = c == U'\t' || c == U'\n' || c == U'\r';
      if (c == 0 || c == 0xFFFD || (!keep_ws && text::is_control(c))) continue;
      if (keep_ws || text::is_whitespace(c)) c = U' ';
    }
    if (chinese && text::is_chinese_char(c)) {
      s.push_back(U' ');
      s.push_back(c);
      s.push_back(U' ');
    } else {
      s.push_back(c);
    }
  }
  // Hugging Face's JavaScript port lower-cases first; either order gives the same ids.
  if (lower) s = text::to_lower(s);
  if (strip) s = strip_accents(s);
  return s;
}

Normalizer make_normalizer(const json& j, const std::string& origin) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, origin, "normalizer");
  if (type == "BertNormalizer") {
    const bool clean = io::json_field<bool>(j, "clean_text", true, origin);
    const bool chinese = io::json_field<bool>(j, "handle_chinese_chars", true, origin);
    const bool lower = io::json_field<bool>(j, "lowercase", true, origin);
    const bool strip = io::json_field<bool>(j, "strip_accents", lower, origin);  // null: follow lowercase
    return [=](const U32& s) { return bert_normalize(s, clean, chinese, strip, lower); };
  }
  if (type == "Lowercase") return [](const U32& s) { return text::to_lower(s); };
  if (type == "StripAccents") return [](const U32& s) { return strip_accents(s); };
  if (type == "NFC") return [](const U32& s) { return text::normalize(s, text::NormalForm::NFC); };
  if (type == "NFD") return [](const U32& s) { return text::normalize(s, text::NormalForm::NFD); };
  if (type == "NFKC") return [](const U32& s) { return text::normalize(s, text::NormalForm::NFKC); };
  if (type == "NFKD") return [](const U32& s) { return text::normalize(s, text::NormalForm::NFKD); };
  if (type == "Strip") {
    const bool left = io::json_field<bool>(j, "strip_left", true, origin);
    const bool right = io::json_field<bool>(j, "strip_right", true, origin);
    return [=](const U32& s) {
      size_t b = 0, e = s.size();
      while (left && b < e && text::is_whitespace(s[b])) ++b;
      while (right && e > b && text::is_whitespace(s[e - 1])) --e;
      return s.substr(b, e - b);
    };
  }
  if (type == "Prepend") {
    const U32 prefix = utf8_decode(io::json_field<std::string>(j, "prepend", "", origin));
    return [=](const U32& s) { return s.empty() ? s : prefix + s; };
  }
  if (type == "Sequence") {
    std::vector<Normalizer> parts;
    for (const auto& n : j.value("normalizers", json::array())) parts.push_back(make_normalizer(n, origin));
    return [parts](const U32& s) {
      U32 out = s;
      for (const auto& p : parts)
        if (p) out = p(out);
      return out;
    };
  }
  fail(origin, "unsupported normalizer \"" + type +
                   "\" (supported: BertNormalizer, Lowercase, StripAccents, NFC, NFD, NFKC, NFKD, Strip, "
                   "Prepend, Sequence)");
}

// ------------------------------------------------------------------ pre-tokenizers
using PreTokenizer = std::function<void(const U32&, std::vector<U32>&)>;

bool is_bert_punctuation(char32_t c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126) ||
         text::is_punctuation(c);
}

void bert_pre_tokenize(const U32& s, std::vector<U32>& out) {
  U32 word;
  for (char32_t c : s) {
    if (text::is_whitespace(c)) {
      if (!word.empty()) out.push_back(std::move(word)), word.clear();
    } else if (is_bert_punctuation(c)) {
      if (!word.empty()) out.push_back(std::move(word)), word.clear();
      out.push_back(U32(1, c));
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) out.push_back(std::move(word));
}

// GPT-2's split: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void gpt2_split(const U32& s, std::vector<U32>& out) {
  const size_t n = s.size();
  auto is_other = [](char32_t c) { return !text::is_whitespace(c) && !text::is_letter(c) && !text::is_number(c); };
  size_t i = 0;
  while (i < n) {
    const char32_t c = s[i];
    size_t j = i;
    if (c == U'\'' && i + 1 < n) {
      const char32_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
      if (a == U's' || a == U't' || a == U'm' || a == U'd') j = i + 2;
      else if ((a == U'r' || a == U'v') && b == U'e') j = i + 3;
      else if (a == U'l' && b == U'l') j = i + 3;
    }
    if (j == i) {
      const size_t k = (c == U' ' && i + 1 < n) ? i + 1 : i;  // the optional leading space
      const char32_t d = s[k];
      bool (*cls)(char32_t) = nullptr;
      if (text::is_letter(d)) cls = text::is_letter;
      else if (text::is_number(d)) cls = text::is_number;
      if (cls) {
        j = k;
        while (j < n && cls(s[j])) ++j;
      } else if (is_other(d)) {
        j = k;
        while (j < n && is_other(s[j])) ++j;
      } else {  // whitespace
        size_t e = i;
        while (e < n && text::is_whitespace(s[e])) ++e;
        // \s+(?!\S) leaves the last space of a run to the word after it.
        j = (e == n || e - i == 1) ? e : e - 1;
      }
    }
    out.emplace_back(s.substr(i, j - i));
    i = j;
  }
}

const std::array<char32_t, 256>& bytes_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    }
    return t;
  }();
  return table;
}

U32 byte_level_map(const U32& piece) {
  const auto& table = bytes_to_unicode();
  U32 out;
  for (unsigned char b : utf8_encode(piece)) out.push_back(table[b]);
  return out;
}

PreTokenizer make_pre_tokenizer(const json& j, const std::string& origin) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, origin, "pre_tokenizer");
  if (type == "BertPreTokenizer") return bert_pre_tokenize;
  if (type == "ByteLevel") {
    const bool prefix = io::json_field<bool>(j, "add_prefix_space", false, origin);
    const bool use_regex = io::json_field<bool>(j, "use_regex", true, origin);
    return [=](const U32& s, std::vector<U32>& out) {
      const U32 t = (prefix && (s.empty() || s[0] != U' ')) ? U" " + s : s;
      std::vector<U32> pieces;
      if (use_regex) gpt2_split(t, pieces);
      else pieces.push_back(t);
      for (const auto& p : pieces) out.push_back(byte_level_map(p));
    };
  }
  if (type == "WhitespaceSplit") {
    return [](const U32& s, std::vector<U32>& out) {
      U32 w;
      for (char32_t c : s) {
        if (text::is_whitespace(c)) {
          if (!w.empty()) out.push_back(std::move(w)), w.clear();
        } else {
          w.push_back(c);
        }
      }
      if (!w.empty()) out.push_back(std::move(w));
    };
  }
  if (type == "Whitespace") {  // \w+|[^\w\s]+
    return [](const U32& s, std::vector<U32>& out) {
      auto word = [](char32_t c) { return text::is_letter(c) || text::is_number(c) || c == U'_'; };
      size_t i = 0;
      while (i < s.size()) {
        if (text::is_whitespace(s[i])) { ++i; continue; }
        const bool w = word(s[i]);
        size_t j = i;
        while (j < s.size() && !text::is_whitespace(s[j]) && word(s[j]) == w) ++j;
        out.push_back(s.substr(i, j - i));
        i = j;
      }
    };
  }
  if (type == "Sequence") {
    std::vector<PreTokenizer> parts;
    for (const auto& p : j.value("pretokenizers", json::array())) parts.push_back(make_pre_tokenizer(p, origin));
    return [parts](const U32& s, std::vector<U32>& out) {
      std::vector<U32> cur{s}, next;
      for (const auto& p : parts) {
        if (!p) continue;
        next.clear();
        for (const auto& piece : cur) p(piece, next);
        cur.swap(next);
      }
      for (auto& piece : cur) out.push_back(std::move(piece));
    };
  }
  fail(origin, "unsupported pre_tokenizer \"" + type +
                   "\" (supported: BertPreTokenizer, ByteLevel, Whitespace, WhitespaceSplit, Sequence)");
}

// ------------------------------------------------------------------ models
struct Vocab {
  std::unordered_map<std::string, int64_t> ids;
  std::vector<std::string> tokens;  // by id; holes are empty

  void add(const std::string& token, int64_t id, const std::string& origin) {
    // Ids index a table, so a huge one would allocate that table; the largest real vocabularies
    // have about 256k entries.
    if (id < 0 || id >= kMaxVocabSize)
      fail(origin, "token \"" + token.substr(0, 64) + "\" has id " + std::to_string(id) + ", expected 0.." +
                       std::to_string(kMaxVocabSize - 1));
    if (token.size() > kMaxTokenBytes)
      fail(origin, "token \"" + token.substr(0, 64) + "...\" (id " + std::to_string(id) + ") is " +
                       std::to_string(token.size()) + " bytes, expected at most " + std::to_string(kMaxTokenBytes));
    ids[token] = id;
    if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(static_cast<size_t>(id) + 1);
    tokens[static_cast<size_t>(id)] = token;
  }
  std::optional<int64_t> find(const std::string& t) const {
    auto it = ids.find(t);
    if (it == ids.end()) return std::nullopt;
    return it->second;
  }
};

class Model {
 public:
  virtual ~Model() = default;
  virtual void tokenize(const U32& word, std::vector<int64_t>& out) const = 0;
  virtual std::string type() const = 0;
};

Vocab read_vocab(const json& model, const std::string& origin) {
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail(origin, "model.vocab must be an object of token: id");
  Vocab v;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) fail(origin, "model.vocab[\"" + it.key() + "\"] is not an integer id: " + it.value().dump());
    v.add(it.key(), it.value().get<int64_t>(), origin);
  }
  return v;
}

class WordPiece final : public Model {
 public:
  WordPiece(const json& j, const Vocab& vocab, const std::string& origin) : vocab_(vocab) {
    const std::string unk = io::json_field<std::string>(j, "unk_token", "[UNK]", origin);
    auto id = vocab.find(unk);
    if (!id) fail(origin, "WordPiece unk_token \"" + unk + "\" is not in the vocabulary");
    unk_ = *id;
    prefix_ = io::json_field<std::string>(j, "continuing_subword_prefix", "##", origin);
    max_chars_ = io::json_field<int64_t>(j, "max_input_chars_per_word", 100, origin);
    if (max_chars_ < 1 || max_chars_ > kMaxWordChars)
      fail(origin, "model.max_input_chars_per_word is " + std::to_string(max_chars_) + ", expected 1.." +
                       std::to_string(kMaxWordChars));
    for (const auto& t : vocab.tokens) longest_ = std::max(longest_, utf8_decode(t).size());
  }
  void tokenize(const U32& word, std::vector<int64_t>& out) const override {
    if (static_cast<int64_t>(word.size()) > max_chars_) { out.push_back(unk_); return; }
    const size_t mark = out.size();
    size_t start = 0;
    while (start < word.size()) {
      // No piece is longer than the longest vocabulary entry (whose length includes any prefix).
      size_t end = std::min(word.size(), start + longest_);
      std::optional<int64_t> found;
      for (; end > start; --end) {
        std::string piece = start > 0 ? prefix_ : std::string();
        piece += utf8_encode(std::u32string_view(word).substr(start, end - start));
        if ((found = vocab_.find(piece))) break;
      }
      if (!found) {  // one unknown piece makes the whole word unknown
        out.resize(mark);
        out.push_back(unk_);
        return;
      }
      out.push_back(*found);
      start = end;
    }
  }
  std::string type() const override { return "WordPiece"; }

 private:
  const Vocab& vocab_;
  int64_t unk_ = 0;
  std::string prefix_;
  int64_t max_chars_ = 100;
  size_t longest_ = 0;  // code points
};

class BPE final : public Model {
 public:
  BPE(const json& j, const Vocab& vocab, const std::string& origin) : vocab_(vocab) {
    const std::string unk = io::json_field<std::string>(j, "unk_token", "", origin);
    if (!unk.empty()) {
      auto id = vocab.find(unk);
      if (!id) fail(origin, "BPE unk_token \"" + unk + "\" is not in the vocabulary");
      unk_ = *id;
    }
    fuse_unk_ = io::json_field<bool>(j, "fuse_unk", false, origin);
    prefix_ = io::json_field<std::string>(j, "continuing_subword_prefix", "", origin);
    suffix_ = io::json_field<std::string>(j, "end_of_word_suffix", "", origin);
    ignore_merges_ = io::json_field<bool>(j, "ignore_merges", false, origin);
    if (io::json_field<bool>(j, "byte_fallback", false, origin)) fail(origin, "BPE byte_fallback is not supported");
    if (!j.contains("merges") || !j["merges"].is_array()) fail(origin, "model.merges must be an array");
    int32_t rank = 0;
    for (const auto& m : j["merges"]) {
      std::string a, b;
      if (m.is_string()) {  // "a b"
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail(origin, "merge " + std::to_string(rank) + " is \"" + s + "\", expected two tokens separated by one space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        fail(origin, "merge " + std::to_string(rank) + " is " + m.dump() + ", expected \"a b\" or [\"a\", \"b\"]");
      }
      std::string merged = a + (prefix_.empty() || b.rfind(prefix_, 0) != 0 ? b : b.substr(prefix_.size()));
      auto ia = vocab.find(a), ib = vocab.find(b), im = vocab.find(merged);
      if (!ia || !ib || !im)
        fail(origin, "merge " + std::to_string(rank) + " (\"" + a + "\", \"" + b + "\"): token \"" +
                         (!ia ? a : !ib ? b : merged) + "\" is not in the vocabulary");
      merges_.emplace(key(*ia, *ib), std::make_pair(rank, *im));
      ++rank;
    }
  }

  void tokenize(const U32& word, std::vector<int64_t>& out) const override {
    if (word.empty()) return;
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(word);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int64_t> ids = merge_word(word);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() > 100000) cache_.clear();
    cache_.emplace(word, std::move(ids));
  }
  std::string type() const override { return "BPE"; }

 private:
  static uint64_t key(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b); }

  std::vector<int64_t> merge_word(const U32& word) const {
    if (ignore_merges_) {
      std::string whole = utf8_encode(word) + suffix_;
      if (auto id = vocab_.find(whole)) return {*id};
    }
    // Symbols as a doubly linked list over the characters; -1 marks an unknown character.
    std::vector<int64_t> id;
    for (size_t i = 0; i < word.size(); ++i) {
      std::string s = (i > 0 ? prefix_ : std::string()) + utf8_encode(std::u32string_view(word).substr(i, 1));
      if (i + 1 == word.size()) s += suffix_;
      auto f = vocab_.find(s);
      id.push_back(f ? *f : -1);
    }
    const int n = static_cast<int>(id.size());
    std::vector<int> prev(n), next(n);
    std::vector<char> alive(n, 1);
    for (int i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
    // Lowest rank first; among equal ranks the leftmost, as in Hugging Face's tokenizers.
    using Item = std::tuple<int32_t, int, int64_t>;  // rank, left position, expected merged id
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue;
    auto push = [&](int left) {
      if (left < 0 || next[left] < 0 || id[left] < 0 || id[next[left]] < 0) return;
      auto it = merges_.find(key(id[left], id[next[left]]));
      if (it != merges_.end()) queue.emplace(it->second.first, left, it->second.second);
    };
    for (int i = 0; i + 1 < n; ++i) push(i);
    while (!queue.empty()) {
      auto [rank, left, merged] = queue.top();
      queue.pop();
      const int right = alive[left] ? next[left] : -1;
      if (right < 0) continue;
      auto it = merges_.find(key(id[left], id[right]));
      if (it == merges_.end() || it->second.second != merged || it->second.first != rank) continue;  // stale
      id[left] = merged;
      alive[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      push(prev[left]);
      push(left);
    }
    std::vector<int64_t> out;
    for (int i = 0; i >= 0 && i < n; i = next[i]) {
      if (id[i] >= 0) {
        out.push_back(id[i]);
      } else if (unk_) {
        if (!(fuse_unk_ && !out.empty() && out.back() == *unk_)) out.push_back(*unk_);
      }
    }
    return out;
  }

  const Vocab& vocab_;
  std::optional<int64_t> unk_;
  bool fuse_unk_ = false, ignore_merges_ = false;
  std::string prefix_, suffix_;
  std::unordered_map<uint64_t, std::pair<int32_t, int64_t>> merges_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<U32, std::vector<int64_t>> cache_;
};

// ------------------------------------------------------------------ post-processors
struct Piece {
  bool special = false;
  std::vector<int64_t> ids;  // special: its ids
  int sequence = 0;          // otherwise: 0 = A, 1 = B
  int64_t type_id = 0;
};

struct PostProcessor {
  std::vector<Piece> single, pair;
};

PostProcessor make_post_processor(const json& j, const Vocab& vocab, const std::string& origin) {
  PostProcessor p;
  auto seq = [](int s, int64_t t) { Piece x; x.sequence = s; x.type_id = t; return x; };
  auto special = [](int64_t id, int64_t t) { Piece x; x.special = true; x.ids = {id}; x.type_id = t; return x; };
  const std::string type = j.is_null() ? "ByteLevel" : type_of(j, origin, "post_processor");
  auto token_pair = [&](const char* field) {
    const json& v = j.contains(field) ? j[field] : json();
    if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer())
      fail(origin, std::string("post_processor.") + field + " must be [token, id], found " + v.dump());
    return v[1].get<int64_t>();
  };
  if (type == "ByteLevel") {  // no special tokens
    p.single = {seq(0, 0)};
    p.pair = {seq(0, 0), seq(1, 1)};
  } else if (type == "BertProcessing") {
    const int64_t cls = token_pair("cls"), sep = token_pair("sep");
    p.single = {special(cls, 0), seq(0, 0), special(sep, 0)};
    p.pair = {special(cls, 0), seq(0, 0), special(sep, 0), seq(1, 1), special(sep, 1)};
  } else if (type == "RobertaProcessing") {
    const int64_t cls = token_pair("cls"), sep = token_pair("sep");
    p.single = {special(cls, 0), seq(0, 0), special(sep, 0)};
    p.pair = {special(cls, 0), seq(0, 0), special(sep, 0), special(sep, 1), seq(1, 1), special(sep, 1)};
  } else if (type == "TemplateProcessing") {
    std::map<std::string, std::vector<int64_t>> specials;
    const json special_tokens = j.value("special_tokens", json::object());
    for (auto it = special_tokens.begin(); it != special_tokens.end(); ++it) {
      if (!it.value().contains("ids") || !it.value()["ids"].is_array())
        fail(origin, "post_processor.special_tokens[\"" + it.key() + "\"] has no \"ids\" array");
      for (const auto& id : it.value()["ids"])
        if (!id.is_number_integer())
          fail(origin, "post_processor.special_tokens[\"" + it.key() + "\"].ids holds " + id.dump() + ", expected integer ids");
      specials[it.key()] = it.value()["ids"].get<std::vector<int64_t>>();
    }
    auto parse = [&](const char* field) {
      std::vector<Piece> out;
      if (!j.contains(field) || !j[field].is_array()) fail(origin, std::string("post_processor.") + field + " must be an array");
      for (const auto& item : j[field]) {
        if (item.contains("SpecialToken")) {
          const std::string id = item["SpecialToken"].value("id", "");
          auto it = specials.find(id);
          if (it == specials.end()) fail(origin, "template token \"" + id + "\" is not in post_processor.special_tokens");
          Piece x;
          x.special = true;
          x.ids = it->second;
          x.type_id = item["SpecialToken"].value("type_id", 0);
          out.push_back(x);
        } else if (item.contains("Sequence")) {
          const std::string id = item["Sequence"].value("id", "A");
          if (id != "A" && id != "B") fail(origin, "template sequence id \"" + id + "\", expected A or B");
          out.push_back(seq(id == "A" ? 0 : 1, item["Sequence"].value("type_id", 0)));
        } else {
          fail(origin, "template item " + item.dump() + ", expected SpecialToken or Sequence");
        }
      }
      return out;
    };
    p.single = parse("single");
    p.pair = parse("pair");
  } else {
    fail(origin, "unsupported post_processor \"" + type +
                     "\" (supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel)");
  }
  for (const auto* list : {&p.single, &p.pair})
    for (const auto& piece : *list)
      for (int64_t id : piece.ids)
        if (id < 0 || id >= static_cast<int64_t>(vocab.tokens.size()))
          fail(origin, "post-processor special token id " + std::to_string(id) + " is outside the vocabulary (size " +
                           std::to_string(vocab.tokens.size()) + ")");
  return p;
}

struct AddedToken {
  U32 content;
  int64_t id = 0;
  bool lstrip = false, rstrip = false, normalized = false;
};

}  // namespace

// ------------------------------------------------------------------ the tokenizer
struct Tokenizer::Impl {
  std::string origin;
  Vocab vocab;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  std::unique_ptr<Model> model;
  PostProcessor post;
  std::vector<AddedToken> raw_tokens, normalized_tokens;  // matched before / after normalisation
  int64_t pad = 0;

  // Splits `s` at the leftmost-longest occurrences of `tokens`; a piece's second is its token's
  // index or -1. lstrip/rstrip tokens swallow the whitespace beside them.
  static std::vector<std::pair<U32, int>> split_added(const U32& s, const std::vector<AddedToken>& tokens) {
    std::vector<std::pair<U32, int>> out;
    size_t start = 0, i = 0;
    while (i < s.size()) {
      int best = -1;
      for (size_t t = 0; t < tokens.size(); ++t) {
        const U32& c = tokens[t].content;
        if (!c.empty() && s.compare(i, c.size(), c) == 0 && (best < 0 || c.size() > tokens[best].content.size()))
          best = static_cast<int>(t);
      }
      if (best < 0) { ++i; continue; }
      if (i > start) out.emplace_back(s.substr(start, i - start), -1);
      out.emplace_back(tokens[best].content, best);
      i += tokens[best].content.size();
      start = i;
    }
    if (start < s.size()) out.emplace_back(s.substr(start), -1);
    for (size_t k = 0; k < out.size(); ++k) {
      if (out[k].second < 0) continue;
      const AddedToken& t = tokens[out[k].second];
      if (t.lstrip && k > 0 && out[k - 1].second < 0) {
        U32& p = out[k - 1].first;
        while (!p.empty() && text::is_whitespace(p.back())) p.pop_back();
      }
      if (t.rstrip && k + 1 < out.size() && out[k + 1].second < 0) {
        U32& p = out[k + 1].first;
        size_t b = 0;
        while (b < p.size() && text::is_whitespace(p[b])) ++b;
        p.erase(0, b);
      }
    }
    return out;
  }

  // Calls on_added(id) for each added token and on_word(word) for each pre-tokenized word, in order.
  void visit(const std::string& utf8, const std::function<void(int64_t)>& on_added,
             const std::function<void(const U32&)>& on_word) const {
    std::vector<U32> words;
    for (auto& [section, tok] : split_added(utf8_decode(utf8), raw_tokens)) {
      if (tok >= 0) { on_added(raw_tokens[tok].id); continue; }
      if (section.empty()) continue;
      const U32 normalized = normalizer ? normalizer(section) : section;
      for (auto& [sub, ntok] : split_added(normalized, normalized_tokens)) {
        if (ntok >= 0) { on_added(normalized_tokens[ntok].id); continue; }
        if (sub.empty()) continue;
        words.clear();
        if (pre_tokenizer) pre_tokenizer(sub, words);
        else words.push_back(sub);
        for (const auto& w : words) on_word(w);
      }
    }
  }

  std::vector<int64_t> encode_text(const std::string& utf8) const {
    std::vector<int64_t> ids;
    visit(utf8, [&](int64_t id) { ids.push_back(id); }, [&](const U32& w) { model->tokenize(w, ids); });
    return ids;
  }
};

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_file(const std::string& path) { return from_json(io::read_text_file(path), path); }

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& origin) {
  const json j = io::parse_json(json_text, origin);
  if (!j.is_object() || !j.contains("model")) fail(origin, "not a tokenizer.json: no \"model\" object");
  auto impl = std::make_shared<Impl>();
  impl->origin = origin;
  const json& m = j["model"];
  // Old WordPiece files omit the model type.
  const std::string type = m.contains("type") ? type_of(m, origin, "model")
                           : m.contains("merges") ? "BPE" : "WordPiece";
  impl->vocab = read_vocab(m, origin);
  std::vector<AddedToken> added;
  for (const auto& t : j.value("added_tokens", json::array())) {
    if (!t.contains("content") || !t["content"].is_string() || !t.contains("id") || !t["id"].is_number_integer())
      fail(origin, "added_tokens entry " + t.dump() + " needs a \"content\" string and an integer \"id\"");
    AddedToken a;
    a.content = utf8_decode(t["content"].get<std::string>());
    a.id = t["id"].get<int64_t>();
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    const bool special = t.value("special", false);
    a.normalized = io::json_field<bool>(t, "normalized", !special, origin);
    impl->vocab.add(t["content"].get<std::string>(), a.id, origin);
    added.push_back(a);
  }
  if (type == "WordPiece") impl->model = std::make_unique<WordPiece>(m, impl->vocab, origin);
  else if (type == "BPE") impl->model = std::make_unique<BPE>(m, impl->vocab, origin);
  else fail(origin, "unsupported model \"" + type + "\" (supported: WordPiece, BPE)");
  impl->normalizer = make_normalizer(j.value("normalizer", json()), origin);
  impl->pre_tokenizer = make_pre_tokenizer(j.value("pre_tokenizer", json()), origin);
  impl->post = make_post_processor(j.value("post_processor", json()), impl->vocab, origin);
  for (auto& a : added) {
    if (a.normalized && impl->normalizer) {
      a.content = impl->normalizer(a.content);
      impl->normalized_tokens.push_back(a);
    } else {
      impl->raw_tokens.push_back(a);
    }
  }
  const json padding = j.value("padding", json());
  if (padding.is_object() && padding.contains("pad_id")) impl->pad = io::json_field<int64_t>(padding, "pad_id", 0, origin);
  else if (auto id = impl->vocab.find("[PAD]")) impl->pad = *id;
  else if (auto id2 = impl->vocab.find("<pad>")) impl->pad = *id2;
  return Tokenizer(std::move(impl));
}

Encoding Tokenizer::encode(const std::string& text, const std::optional<std::string>& text_pair, int64_t max_length,
                           bool add_special_tokens) const {
  std::vector<int64_t> seq[2] = {impl_->encode_text(text), text_pair ? impl_->encode_text(*text_pair) : std::vector<int64_t>{}};
  const bool pair = text_pair.has_value();
  if (max_length > 0) {
    const int64_t specials = add_special_tokens ? num_special_tokens(pair) : 0;
    const int64_t budget = max_length - specials;
    if (budget < 0)
      throw std::invalid_argument("max_length " + std::to_string(max_length) + " is shorter than the " +
                                  std::to_string(specials) + " special tokens of a " + (pair ? "pair" : "single sequence"));
    int64_t n1 = static_cast<int64_t>(seq[0].size()), n2 = static_cast<int64_t>(seq[1].size());
    if (!pair) {
      n1 = std::min(n1, budget);
    } else if (n1 + n2 > budget) {
      // Longest first: trim the longer sequence until both are equal, then both alternately.
      const bool swap = n1 > n2;
      if (swap) std::swap(n1, n2);
      n2 = n1 > budget ? n1 : std::max(n1, budget - n1);
      if (n1 + n2 > budget) {
        n1 = budget / 2;
        n2 = n1 + budget % 2;
      }
      if (swap) std::swap(n1, n2);
    }
    seq[0].resize(static_cast<size_t>(n1));
    seq[1].resize(static_cast<size_t>(n2));
  }
  Encoding e;
  for (const Piece& p : pair ? impl_->post.pair : impl_->post.single) {
    if (p.special && !add_special_tokens) continue;
    const std::vector<int64_t>& ids = p.special ? p.ids : seq[p.sequence];
    e.ids.insert(e.ids.end(), ids.begin(), ids.end());
    e.type_ids.insert(e.type_ids.end(), ids.size(), p.type_id);
  }
  e.tokens.reserve(e.ids.size());
  for (int64_t id : e.ids) e.tokens.push_back(id_to_token(id));
  return e;
}

std::vector<std::string> Tokenizer::pre_tokenize(const std::string& text) const {
  std::vector<std::string> out;
  impl_->visit(text, [](int64_t) {}, [&](const U32& w) { out.push_back(utf8_encode(w)); });
  return out;
}

int64_t Tokenizer::num_special_tokens(bool pair) const {
  int64_t n = 0;
  for (const Piece& p : pair ? impl_->post.pair : impl_->post.single) n += static_cast<int64_t>(p.ids.size());
  return n;
}

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const { return impl_->vocab.find(token); }

const std::string& Tokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw std::out_of_range(impl_->origin + ": token id " + std::to_string(id) + " is outside [0, " +
                            std::to_string(vocab_size()) + ")");
  return impl_->vocab.tokens[static_cast<size_t>(id)];
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->vocab.tokens.size()); }
int64_t Tokenizer::pad_id() const { return impl_->pad; }
std::string Tokenizer::model_type() const { return impl_->model->type(); }
const std::string& Tokenizer::origin() const { return impl_->origin; }

}  // namespace gsoft
