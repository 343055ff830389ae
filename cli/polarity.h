#pragma once
// The main job's task (quickstart, baseline, compare): Pang & Lee's sentence polarity CSV
// ("label","text", no header, labels -1 / 1) with its fixed split, and the shipped encoder.
#include <filesystem>
#include <stdexcept>
#include <string>

#include "gsoft/data/tasks.h"
#include "subprocess.h"

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

}  // namespace gsoft::cli
