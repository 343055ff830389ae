#pragma once
// What the diffusion subcommands share: the Fashion-MNIST items, prompt checking against the
// scene grammar, and writing images as PNG files.
#include <filesystem>
#include <string>
#include <vector>

#include "gsoft/data/fashion_scenes.h"
#include "gsoft/data/images.h"
#include "gsoft/diffusion/evaluator.h"
#include "gsoft/io/png.h"

namespace gsoft::cli {

// Fashion-MNIST's training or test items from `dir` (default: Debian's dataset-fashion-mnist).
inline data::ImageDataset fashion_items(const std::string& dir, bool train) {
  return data::load_image_dataset("fashion-mnist", dir, train);
}

// Parses each prompt (throwing with the grammar for one outside it) unless `any` is set.
inline std::vector<data::Prompt> check_prompts(const std::vector<std::string>& prompts, bool any) {
  std::vector<data::Prompt> out;
  for (const auto& p : prompts) out.push_back(any ? data::Prompt{} : data::parse_prompt(p));
  return out;
}

// uint8 (N, 1, H, W) image i as a PNG.
inline void write_image_png(const std::string& path, const torch::Tensor& images, int64_t i) {
  const torch::Tensor img = images[i][0].contiguous();
  io::GrayImage g;
  g.width = img.size(1);
  g.height = img.size(0);
  g.pixels.assign(img.data_ptr<uint8_t>(), img.data_ptr<uint8_t>() + img.numel());
  io::write_png(path, g);
}

inline std::string default_evaluator(const std::string& model_dir) {
  return (std::filesystem::path(model_dir) / "evaluator").string();
}

}  // namespace gsoft::cli
