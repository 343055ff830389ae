#pragma once
// The one way gsoft parses JSON from files (internal): size and nesting are capped before the
// recursive parser can be driven into a stack overflow, and errors name the file.
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace gsoft::io {

constexpr size_t kMaxJsonBytes = 100ull * 1024 * 1024;
constexpr int kMaxJsonDepth = 64;

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

}  // namespace gsoft::io
