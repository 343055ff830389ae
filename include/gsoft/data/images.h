#pragma once
// Image classification data: Fashion-MNIST / MNIST IDX files (gzipped or not) and the CIFAR-10 and
// CIFAR-100 binary formats, plus the augmentation of the LipConvNet recipe (random crop with zero
// padding, horizontal flip). Every size is checked against the file before anything is allocated;
// a truncated or foreign file is an error naming it, what was expected and what was found.
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gsoft::data {

struct ImageDataset {
  std::string name;
  torch::Tensor images;  // (N, C, H, W) uint8
  torch::Tensor labels;  // (N) int64
  int64_t num_classes = 0;
  std::vector<double> mean, std;  // per channel, of images / 255
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

constexpr int64_t kMaxImages = 10'000'000;
constexpr int64_t kMaxImageSide = 4096;
constexpr uint64_t kMaxImageBytes = uint64_t{1} << 33;  // 8 GiB of pixels per file

// IDX (LeCun's MNIST format): images are type 0x08 (ubyte) with 3 dimensions, labels type 0x08
// with 1. A path ending in .gz is decompressed while reading.
ImageDataset read_idx(const std::string& images_path, const std::string& labels_path, int64_t num_classes = 10);

// CIFAR-10: data_batch_1..5.bin / test_batch.bin, records of 1 label byte + 3072 pixel bytes.
// CIFAR-100: train.bin / test.bin, records of 2 label bytes (coarse, fine) + 3072; the fine label
// (100 classes) is used. `dir` may also be the parent of cifar-10-batches-bin / cifar-100-binary.
ImageDataset read_cifar10(const std::string& dir, bool train);
ImageDataset read_cifar100(const std::string& dir, bool train);

// name: fashion-mnist (dir default /usr/share/datasets/fashion-mnist), cifar10, cifar100.
ImageDataset load_image_dataset(const std::string& name, const std::string& dir, bool train);
std::string default_image_dir(const std::string& name);

// Zero-pads the images symmetrically to side x side (e.g. Fashion-MNIST's 28 to 32, so that five
// stride-2 levels divide it). Zero is the background of those images.
ImageDataset pad_images(const ImageDataset& d, int64_t side);

// uint8 (B, C, H, W) -> float, (x / 255 - mean) / std per channel.
torch::Tensor normalize_images(const torch::Tensor& images, const std::vector<double>& mean, const std::vector<double>& std);

// Random crop of the original size from the zero-padded images, and a horizontal flip with
// probability 1/2, both per image and drawn from `seed` alone (so a resumed run redraws them).
torch::Tensor augment_images(const torch::Tensor& images, int64_t padding, bool flip, uint64_t seed);

}  // namespace gsoft::data
