#pragma once
// How gsoft reads files and the JSON in them (internal): whole files read in one call, JSON size
// and nesting capped before the recursive parser can be driven into a stack overflow, and every
// error names the file.
#include <fstream>
#include <functional>
#include <limits>
#include <type_traits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <sstream>
#include <string>

namespace gsoft::io {

constexpr size_t kMaxJsonBytes = 100ull * 1024 * 1024;
constexpr int kMaxJsonDepth = 64;
constexpr size_t kMaxLineBytes = 16u << 20;  // text lines (corpora, word vectors)

// `on_top_level_key` (optional) sees every key of the top-level object, e.g. to reject duplicates.
template <typename Json = nlohmann::json>
Json parse_json(const char* begin, const char* end, const std::string& origin,
                const std::function<void(const std::string&)>& on_top_level_key = {}) {
  if (static_cast<size_t>(end - begin) > kMaxJsonBytes)
    throw std::runtime_error(origin + ": JSON of " + std::to_string(end - begin) + " bytes exceeds the " +
                             std::to_string(kMaxJsonBytes) + "-byte limit");
  auto callback = [&](int depth, typename Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxJsonDepth)
      throw std::runtime_error(origin + ": JSON nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    if (on_top_level_key && event == Json::parse_event_t::key && depth == 1) on_top_level_key(parsed.template get<std::string>());
    return true;
  };
  try {
    return Json::parse(begin, end, callback);
  } catch (const typename Json::exception& e) {
    throw std::runtime_error(origin + ": not valid JSON: " + e.what());
  }
}

template <typename Json = nlohmann::json>
Json parse_json(const std::string& text, const std::string& origin) {
  return parse_json<Json>(text.data(), text.data() + text.size(), origin);
}

// The whole file as bytes; throws "<path>: cannot open".
inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// std::getline with a cap: reads one line without its '\n' into `line`; false at the end of the
// input. A line longer than `max_bytes` throws "<origin>:<line_no>: line longer than N bytes"
// before more than max_bytes are held.
inline bool read_line(std::istream& in, std::string& line, size_t max_bytes, const std::string& origin, int64_t line_no) {
  line.clear();
  std::streambuf* sb = in.rdbuf();
  bool any = false;
  for (;;) {
    const int c = sb->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return any;
    }
    any = true;
    if (c == '\n') return true;
    if (line.size() >= max_bytes)
      throw std::runtime_error(origin + ":" + std::to_string(line_no) + ": line longer than " + std::to_string(max_bytes) +
                               " bytes");
    line.push_back(static_cast<char>(c));
  }
}

// j[key] as T, or `fallback` when it is missing or null; a value of the wrong type is an error
// naming the file, the field and the value.
template <typename T, typename Json>
T json_field(const Json& j, const char* key, T fallback, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann converts 1e59 or 2^64-1 to an integer type by a cast, which is undefined or wraps.
    const auto& v = j[key];
    const bool fits = v.is_number_unsigned() ? v.template get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                      : v.is_number_integer() ? v.template get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                                    v.template get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max())
                                              : false;
    if (!fits)
      throw std::runtime_error(origin + ": field '" + key + "' has the wrong type: expected an integer in " +
                               std::to_string(std::numeric_limits<T>::min()) + ".." +
                               std::to_string(std::numeric_limits<T>::max()) + ", found " + v.dump());
  }
  try {
    return j[key].template get<T>();
  } catch (const typename Json::exception&) {
    throw std::runtime_error(origin + ": field '" + key + "' has the wrong type: " + j[key].dump());
  }
}

}  // namespace gsoft::io
