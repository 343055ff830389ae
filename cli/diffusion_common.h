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

// A greyscale image as a (H, W) uint8 tensor.
inline torch::Tensor gray_tensor(const io::GrayImage& g) {
  return torch::tensor(std::vector<int64_t>(g.pixels.begin(), g.pixels.end())).to(torch::kUInt8).view({g.height, g.width});
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

// Each item n times, in order; copy j of item i gets the seed seed + i*n + j, so an image's seed
// does not depend on what else is sampled.
template <typename T>
std::vector<uint64_t> repeat_with_seeds(const std::vector<T>& items, int64_t n, uint64_t seed, std::vector<T>& out) {
  std::vector<uint64_t> seeds;
  for (size_t i = 0; i < items.size(); ++i)
    for (int64_t j = 0; j < n; ++j) {
      out.push_back(items[i]);
      seeds.push_back(seed + i * static_cast<uint64_t>(n) + static_cast<uint64_t>(j));
    }
  return seeds;
}

// SampleOptions from a command's --steps, --guidance and --batch-size.
inline diffusion::SampleOptions sample_options(int64_t steps, double guidance, int64_t batch_size) {
  diffusion::SampleOptions so;
  so.steps = steps;
  so.guidance = guidance;
  so.batch_size = batch_size;
  return so;
}

inline std::string default_evaluator(const std::string& model_dir) {
  return (std::filesystem::path(model_dir) / "evaluator").string();
}

}  // namespace gsoft::cli
