#pragma once
// Reading what the gsoft CLI writes, for the command-line tests: JSON-lines files and the JSON
// summary that is a command's last output line.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/helpers.h"

namespace gsoft::test {

// Every non-empty line of a JSON-lines file, parsed.
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_text(p));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The last line of a command's output, parsed as JSON.
inline nlohmann::json last_json_line(const std::string& text) {
  const size_t end = text.find_last_not_of('\n');
  const size_t begin = text.rfind('\n', end);
  return nlohmann::json::parse(text.substr(begin == std::string::npos ? 0 : begin + 1, end + 1 - (begin + 1)));
}

}  // namespace gsoft::test
