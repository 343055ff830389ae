#pragma once
// Commands that run this program again in child processes (compare, bench train), so each run's
// peak memory and failures are its own: the program's path, shell quoting, and a run whose last
// stdout line is a JSON object.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace gsoft::cli {

// s as one single-quoted shell word.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline std::string self_path() {
  std::array<char, 4096> buf{};
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw std::runtime_error("cannot find this program's path (/proc/self/exe)");
  return std::string(buf.data(), static_cast<size_t>(n));
}

// Runs `gsoft <args>` (args already shell-quoted) with stderr to `log` (or to this process's stderr
// when log is empty), and returns the JSON object of its last stdout line. Throws naming `what` and
// the log when it fails or prints none.
inline nlohmann::json run_self_json(const std::string& args, const std::string& log, const std::string& what) {
  if (!log.empty()) std::filesystem::create_directories(std::filesystem::path(log).parent_path());
  const std::string cmd = shell_quote(self_path()) + " " + args + (log.empty() ? "" : " 2>" + shell_quote(log));
  const std::string see = log.empty() ? "its output above" : log;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error(what + ": cannot start " + cmd);
  std::string text;
  std::array<char, 4096> buf{};
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) text.append(buf.data(), n);
  const int rc = ::pclose(p);
  const size_t end = text.find_last_not_of('\n');
  if (rc != 0 || end == std::string::npos) throw std::runtime_error(what + " failed (status " + std::to_string(rc) + "); see " + see);
  const size_t nl = text.rfind('\n', end);
  const size_t begin = nl == std::string::npos ? 0 : nl + 1;
  try {
    return nlohmann::json::parse(text.substr(begin, end + 1 - begin));
  } catch (const nlohmann::json::exception&) {
    throw std::runtime_error(what + ": its last line is not JSON; see " + see);
  }
}

}  // namespace gsoft::cli
