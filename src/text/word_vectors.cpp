#include "gsoft/text/word_vectors.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "io/file_util.h"

namespace gsoft {
namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) { throw std::runtime_error(where + ": " + what); }

std::string shown(const std::string& s) { return s.size() > 40 ? "'" + s.substr(0, 40) + "...'" : "'" + s + "'"; }

bool parse_float(const std::string& s, float& out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtof(s.c_str(), &end);
  return end == s.c_str() + s.size() && errno != ERANGE && std::isfinite(out);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

void check_dim(const std::string& where, int64_t dim) {
  if (dim < 1 || dim > kMaxWordVectorDim)
    fail(where, "vector dimension " + std::to_string(dim) + " is outside 1.." + std::to_string(kMaxWordVectorDim));
}

WordVectors read_text(std::istream& in, const std::string& path, const std::function<bool(const std::string&)>& wanted) {
  WordVectors r;
  std::string line;
  int64_t line_no = 0;
  std::vector<std::string> fields;
  while (io::read_line(in, line, io::kMaxLineBytes, path, line_no + 1)) {
    ++line_no;
    const std::string where = path + ":" + std::to_string(line_no);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    fields.clear();
    std::istringstream ls(line);
    for (std::string f; ls >> f;) fields.push_back(f);
    if (fields.empty()) continue;  // only \v, \f or \r: blank to the stream, not to the check above
    if (line_no == 1 && fields.size() == 2 && std::all_of(fields[1].begin(), fields[1].end(), is_digit) &&
        std::all_of(fields[0].begin(), fields[0].end(), is_digit))
      continue;  // word2vec header: COUNT DIM
    if (fields[0].size() > kMaxWordBytes)
      fail(where, "word of " + std::to_string(fields[0].size()) + " bytes exceeds the " + std::to_string(kMaxWordBytes) + "-byte limit");
    const int64_t d = static_cast<int64_t>(fields.size()) - 1;
    if (r.dim == 0) check_dim(where, d), r.dim = d;
    if (d != r.dim)
      fail(where, "expected a word and " + std::to_string(r.dim) + " numbers (as on the first line), found " +
                      std::to_string(d) + " numbers");
    ++r.entries;
    if (wanted && !wanted(fields[0])) continue;
    std::vector<float> v(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i)
      if (!parse_float(fields[static_cast<size_t>(i) + 1], v[static_cast<size_t>(i)]))
        fail(where, "value " + std::to_string(i + 1) + " of " + shown(fields[0]) + " is " + shown(fields[static_cast<size_t>(i) + 1]) +
                        ", expected a finite number");
    r.vectors[fields[0]] = std::move(v);
  }
  if (r.dim == 0) fail(path, "no word vectors found");
  return r;
}

// A streaming reader for the wink JSON: only the parts needed are tokenised, the rest skipped.
class JsonStream {
 public:
  JsonStream(std::istream& in, std::string path) : in_(in), path_(std::move(path)) {}
  int peek() {
    skip_ws();
    return in_.peek();
  }
  int get() {
    skip_ws();
    const int c = in_.get();
    if (c != EOF) ++offset_;
    return c;
  }
  void expect(char want) {
    const int c = get();
    if (c != want) error(std::string("expected '") + want + "', found " + found(c));
  }
  std::string string() {
    expect('"');
    std::string s;
    for (;;) {
      int c = in_.get();
      ++offset_;
      if (c == EOF) error("unterminated string");
      if (c == '"') return s;
      if (c == '\\') {
        c = in_.get();
        ++offset_;
        switch (c) {
          case '"': case '\\': case '/': s += static_cast<char>(c); break;
          case 'n': s += '\n'; break;
          case 't': s += '\t'; break;
          case 'r': s += '\r'; break;
          case 'b': s += '\b'; break;
          case 'f': s += '\f'; break;
          case 'u': {
            std::string hex;
            for (int i = 0; i < 4; ++i) hex += static_cast<char>(in_.get()), ++offset_;
            const unsigned long cp = std::strtoul(hex.c_str(), nullptr, 16);
            // Words are matched by their UTF-8 bytes; surrogate pairs are rare in vocabularies
            // and are kept as two 3-byte sequences rather than rejected.
            if (cp < 0x80) s += static_cast<char>(cp);
            else if (cp < 0x800) s += static_cast<char>(0xC0 | (cp >> 6)), s += static_cast<char>(0x80 | (cp & 0x3F));
            else
              s += static_cast<char>(0xE0 | (cp >> 12)), s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
                  s += static_cast<char>(0x80 | (cp & 0x3F));
            break;
          }
          default: error("bad escape in a string");
        }
      } else {
        s += static_cast<char>(c);
      }
      if (s.size() > kMaxWordBytes) error("string longer than " + std::to_string(kMaxWordBytes) + " bytes");
    }
  }
  float number() {
    skip_ws();
    std::string s;
    while (s.size() < 64) {
      const int c = in_.peek();
      if (c == EOF || !(std::isdigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E')) break;
      s += static_cast<char>(in_.get());
      ++offset_;
    }
    float v = 0;
    if (!parse_float(s, v)) error("expected a finite number, found " + (s.empty() ? found(in_.peek()) : shown(s)));
    return v;
  }
  // Skips any JSON value (strings may contain brackets).
  void skip_value(int depth = 0) {
    // Recursion follows the nesting, so it is capped like the other JSON readers'.
    if (depth > io::kMaxJsonDepth) error("JSON nests deeper than " + std::to_string(io::kMaxJsonDepth) + " levels");
    const int c = peek();
    if (c == '"') {
      string();
    } else if (c == '[' || c == '{') {
      const char close = c == '[' ? ']' : '}';
      get();
      if (peek() == close) return void(get());
      for (;;) {
        if (close == '}') string(), expect(':');
        skip_value(depth + 1);
        const int n = get();
        if (n == close) return;
        if (n != ',') error(std::string("expected ',' or '") + close + "', found " + found(n));
      }
    } else {
      while (in_.peek() != EOF && std::strchr(",}] \t\r\n", in_.peek()) == nullptr) in_.get(), ++offset_;
    }
  }
  [[noreturn]] void error(const std::string& what) const { fail(path_ + ": byte " + std::to_string(offset_), what); }

 private:
  static std::string found(int c) { return c == EOF ? "the end of the file" : "'" + std::string(1, static_cast<char>(c)) + "'"; }
  void skip_ws() {
    while (in_.peek() == ' ' || in_.peek() == '\n' || in_.peek() == '\r' || in_.peek() == '\t') in_.get(), ++offset_;
  }
  std::istream& in_;
  std::string path_;
  int64_t offset_ = 0;
};

WordVectors read_wink_json(std::istream& in, const std::string& path, const std::function<bool(const std::string&)>& wanted) {
  WordVectors r;
  JsonStream js(in, path);
  js.expect('{');
  bool seen_vectors = false;
  while (js.peek() != '}') {
    const std::string key = js.string();
    js.expect(':');
    if (key == "dimensions") {
      const float d = js.number();
      // Range-check as a float: casting NaN or 1e30 to an integer is undefined.
      if (!(d >= 1 && d <= kMaxWordVectorDim) || d != static_cast<float>(static_cast<int64_t>(d))) {
        std::ostringstream shown_d;
        shown_d << d;
        js.error("\"dimensions\" is " + shown_d.str() + ", expected a whole number in 1.." +
                 std::to_string(kMaxWordVectorDim));
      }
      r.dim = static_cast<int64_t>(d);
    } else if (key == "vectors") {
      if (r.dim == 0) js.error("\"vectors\" comes before \"dimensions\"; expected wink-embeddings' layout");
      seen_vectors = true;
      js.expect('{');
      while (js.peek() != '}') {
        const std::string word = js.string();
        js.expect(':');
        js.expect('[');
        const bool keep = !wanted || wanted(word);
        std::vector<float> v;
        if (keep) v.reserve(static_cast<size_t>(r.dim));
        int64_t n = 0;
        if (js.peek() != ']') {
          for (;;) {
            const float x = js.number();
            if (keep && n < r.dim) v.push_back(x);
            ++n;
            const int c = js.get();
            if (c == ']') break;
            if (c != ',') js.error("in the vector of " + shown(word) + ": expected ',' or ']'");
          }
        }
        if (n < r.dim)
          js.error("the vector of " + shown(word) + " has " + std::to_string(n) + " values, expected at least " +
                   std::to_string(r.dim));
        ++r.entries;
        if (keep) r.vectors[word] = std::move(v);
        if (js.peek() == ',') js.get();
        else if (js.peek() != '}') js.error("expected ',' or '}' after the vector of " + shown(word));
      }
      js.get();
    } else {
      js.skip_value();
    }
    if (js.peek() == ',') js.get();
    else if (js.peek() != '}') js.error("expected ',' or '}' after \"" + key + "\"");
  }
  if (!seen_vectors) fail(path, "no \"vectors\" object; expected wink-embeddings' JSON layout");
  return r;
}

}  // namespace

WordVectors read_word_vectors(const std::string& path, const std::function<bool(const std::string&)>& wanted) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open word-vector file: " + std::strerror(errno));
  // Skip a UTF-8 byte-order mark and leading whitespace to tell JSON from text.
  if (in.peek() == 0xEF) {
    char bom[3];
    in.read(bom, 3);
    if (!(static_cast<unsigned char>(bom[1]) == 0xBB && static_cast<unsigned char>(bom[2]) == 0xBF)) in.seekg(0);
  }
  while (in.peek() == ' ' || in.peek() == '\n' || in.peek() == '\r' || in.peek() == '\t') in.get();
  if (in.peek() == '{') return read_wink_json(in, path, wanted);
  return read_text(in, path, wanted);
}

}  // namespace gsoft
