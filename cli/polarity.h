#pragma once
// The main job's task (quickstart, baseline, compare): Pang & Lee's sentence polarity CSV
// ("label","text", no header, labels -1 / 1) with its fixed split, and the shipped encoder; and
// this program's own path, quoted for the shell, to run itself.
#include <unistd.h>

#include <array>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "gsoft/data/tasks.h"

namespace gsoft::cli {

inline const char* kPolarityData = "data/polarity/polarity-en-pang&lee2.csv";
inline const char* kShippedModel = "models/polarity-bert";

inline data::Split read_polarity_split(const std::string& path) {
  if (!std::filesystem::exists(path))
    throw std::runtime_error(path + ": not found; scripts/setup.sh fetches the polarity data into data/polarity/");
  data::TableFormat f;
  f.header = false;
  f.label_column = "0";
  f.text_column = "1";
  f.label_names = {"-1", "1"};
  return data::split_by_position(data::read_table(path, f));
}

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

}  // namespace gsoft::cli
