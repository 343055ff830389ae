#pragma once
// 8-bit greyscale PNG files through libpng: images and sample grids of the diffusion tools, and
// subject photos. Writes are atomic (a temporary file, then a rename).
#include <cstdint>
#include <string>
#include <vector>

namespace gsoft::io {

struct GrayImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, height * width
};

// Throws std::invalid_argument when pixels.size() != width * height, std::runtime_error on I/O.
void write_png(const std::string& path, const GrayImage& image);

// Reads any PNG (grey, grey+alpha, RGB, RGBA, palette; 1-16 bits) as 8-bit grey: colour by
// ITU-R 601 luma, alpha composed over black. Throws naming the file for anything else, for a
// file that is not a PNG, or for one larger than max_side on a side.
GrayImage read_png(const std::string& path, int64_t max_side = 4096);

}  // namespace gsoft::io
