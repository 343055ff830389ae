#include "gsoft/io/png.h"

#include <png.h>

#include <csetjmp>
#include <cstring>
#include <stdexcept>

#include "gsoft/io/atomic_file.h"
#include "io/file_util.h"

namespace gsoft::io {
namespace {

void on_error(png_structp png, png_const_charp message) {
  auto* what = static_cast<std::string*>(png_get_error_ptr(png));
  if (what) *what = message;
  std::longjmp(png_jmpbuf(png), 1);
}
void on_warning(png_structp, png_const_charp) {}

struct Reader {
  const std::string* data;
  size_t pos;
};

}  // namespace

void write_png(const std::string& path, const GrayImage& image) {
  if (image.width < 1 || image.height < 1 || image.width > (1 << 20) || image.height > (1 << 20) ||
      image.pixels.size() != static_cast<size_t>(image.width * image.height))
    throw std::invalid_argument(path + ": a " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                                " image needs " + std::to_string(image.width * image.height) + " pixels, got " +
                                std::to_string(image.pixels.size()));
  std::string error, out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &error, on_error, on_warning);
  if (!png) throw std::runtime_error(path + ": cannot start libpng");
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error(path + ": PNG encoding failed: " + error);
  }
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep bytes, png_size_t n) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<const char*>(bytes), n);
      },
      nullptr);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8,
               PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < image.height; ++y)
    png_write_row(png, const_cast<png_bytep>(image.pixels.data() + y * image.width));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  write_file_atomic(path, out);
}

GrayImage read_png(const std::string& path, int64_t max_side) {
  const std::string data = read_text_file(path);
  if (data.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(data.data()), 0, 8) != 0)
    throw std::runtime_error(path + ": not a PNG file (no PNG signature)");
  std::string error;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, on_error, on_warning);
  if (!png) throw std::runtime_error(path + ": cannot start libpng");
  png_infop info = png_create_info_struct(png);
  GrayImage img;
  std::vector<png_bytep> rows;
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw std::runtime_error(path + ": bad PNG: " + (error.empty() ? std::string("decoding failed") : error));
  }
  Reader reader{&data, 0};
  png_set_read_fn(png, &reader, [](png_structp p, png_bytep out, png_size_t n) {
    auto* r = static_cast<Reader*>(png_get_io_ptr(p));
    if (r->pos + n > r->data->size()) png_error(p, "the file ends early");
    std::memcpy(out, r->data->data() + r->pos, n);
    r->pos += n;
  });
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (w < 1 || h < 1 || w > static_cast<png_uint_32>(max_side) || h > static_cast<png_uint_32>(max_side)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw std::runtime_error(path + ": image is " + std::to_string(w) + "x" + std::to_string(h) + ", expected sides 1.." +
                             std::to_string(max_side));
  }
  // Everything to 8-bit grey: palettes expanded, 16 bits stripped, colour to luma, alpha over black.
  png_set_expand(png);
  png_set_strip_16(png);
  const int color = png_get_color_type(png, info);
  if (color & PNG_COLOR_MASK_COLOR) png_set_rgb_to_gray_fixed(png, 1, 29900, 58700);
  if (color & PNG_COLOR_MASK_ALPHA) {
    png_color_16 black{};
    png_set_background(png, &black, PNG_BACKGROUND_GAMMA_SCREEN, 0, 1.0);
  }
  png_read_update_info(png, info);
  if (png_get_channels(png, info) != 1 || png_get_bit_depth(png, info) != 8) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw std::runtime_error(path + ": could not convert the PNG to 8-bit grey");
  }
  img.width = w;
  img.height = h;
  img.pixels.resize(static_cast<size_t>(w) * h);
  for (png_uint_32 y = 0; y < h; ++y) rows.push_back(img.pixels.data() + static_cast<size_t>(y) * w);
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return img;
}

}  // namespace gsoft::io
