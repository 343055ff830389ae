#include "gsoft/data/images.h"

#include <torch/torch.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "gsoft/core/error.h"

namespace gsoft::data {
namespace fs = std::filesystem;

namespace {

// Sequential reads from a plain or gzipped file.
class ByteReader {
 public:
  explicit ByteReader(const std::string& path) : path_(path) {
    gz_ = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
    if (gz_) {
      file_ = gzopen(path.c_str(), "rb");
      if (!file_) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
    } else {
      in_.open(path, std::ios::binary);
      if (!in_) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
    }
  }
  ~ByteReader() {
    if (file_) gzclose(file_);
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  // Reads up to n bytes; returns how many were read (fewer only at the end of the data).
  int64_t read(uint8_t* dst, int64_t n) {
    int64_t got = 0;
    while (got < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - got, 1 << 30));
      int64_t r = 0;
      if (gz_) {
        const int k = gzread(file_, dst + got, chunk);
        if (k < 0) {
          int err = 0;
          throw std::runtime_error(path_ + ": corrupt gzip data: " + gzerror(file_, &err));
        }
        r = k;
      } else {
        in_.read(reinterpret_cast<char*>(dst + got), chunk);
        r = in_.gcount();
      }
      if (r == 0) break;
      got += r;
    }
    return got;
  }
  void read_exactly(uint8_t* dst, int64_t n, const std::string& what) {
    const int64_t got = read(dst, n);
    if (got != n)
      throw std::runtime_error(path_ + ": truncated: expected " + std::to_string(n) + " bytes of " + what + ", found " +
                               std::to_string(got));
  }
  bool at_end() {
    uint8_t b;
    return read(&b, 1) == 0;
  }
  // An upper bound on the bytes still to come, to check a header's claims before allocating:
  // the rest of a plain file; for gzip, deflate's largest expansion (1032:1) of the whole file.
  uint64_t most_remaining() {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path_, ec);
    if (ec) return UINT64_MAX;
    if (gz_) return size > UINT64_MAX / 1032 ? UINT64_MAX : size * 1032;
    const auto pos = in_.tellg();
    return pos < 0 ? size : size - std::min<uint64_t>(size, static_cast<uint64_t>(pos));
  }

 private:
  std::string path_;
  bool gz_ = false;
  gzFile file_ = nullptr;
  std::ifstream in_;
};

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Returns the dimensions after checking the magic (0, 0, type 0x08, ndims).
std::vector<int64_t> idx_header(ByteReader& r, const std::string& path, int64_t ndims) {
  uint8_t magic[4];
  r.read_exactly(magic, 4, "IDX header");
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != ndims)
    throw std::runtime_error(path + ": not an IDX file of unsigned bytes with " + std::to_string(ndims) +
                             " dimensions: magic bytes are " + std::to_string(magic[0]) + " " + std::to_string(magic[1]) +
                             " " + std::to_string(magic[2]) + " " + std::to_string(magic[3]) + ", expected 0 0 8 " +
                             std::to_string(ndims));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < ndims; ++i) {
    uint8_t b[4];
    r.read_exactly(b, 4, "IDX header");
    dims.push_back(big_endian(b));
  }
  GSOFT_CHECK(dims[0] >= 1 && dims[0] <= kMaxImages, path, ": ", dims[0], " items, expected 1..", kMaxImages);
  for (size_t i = 1; i < dims.size(); ++i)
    GSOFT_CHECK(dims[i] >= 1 && dims[i] <= kMaxImageSide, path, ": image side ", dims[i], ", expected 1..", kMaxImageSide);
  return dims;
}

void check_labels(const torch::Tensor& labels, int64_t num_classes, const std::string& path) {
  if (labels.numel() == 0) return;
  const int64_t top = labels.max().item<int64_t>();
  GSOFT_CHECK(top < num_classes, path, ": label ", top, " found, expected labels 0..", num_classes - 1);
}

ImageDataset read_cifar(const std::vector<fs::path>& files, int64_t label_bytes, int64_t num_classes, const std::string& name) {
  constexpr int64_t kPixels = 3 * 32 * 32;
  const int64_t record = label_bytes + kPixels;
  int64_t total = 0;
  for (const auto& f : files) {
    std::error_code ec;
    const auto size = static_cast<int64_t>(fs::file_size(f, ec));
    if (ec) throw std::runtime_error(f.string() + ": cannot read: " + ec.message());
    GSOFT_CHECK(size > 0 && size % record == 0, f.string(), ": ", size, " bytes is not a whole number of ", record,
                "-byte ", name, " records (", label_bytes, " label byte", label_bytes > 1 ? "s" : "",
                " + 3072 pixels); truncated, or not a ", name, " binary file");
    total += size / record;
  }
  GSOFT_CHECK(total <= kMaxImages, name, ": ", total, " images exceed the limit of ", kMaxImages);
  ImageDataset d;
  d.name = name;
  d.num_classes = num_classes;
  d.images = torch::empty({total, 3, 32, 32}, torch::kUInt8);
  d.labels = torch::empty({total}, torch::kLong);
  uint8_t* px = d.images.data_ptr<uint8_t>();
  int64_t* lb = d.labels.data_ptr<int64_t>();
  std::vector<uint8_t> buf(static_cast<size_t>(record));
  int64_t i = 0;
  for (const auto& f : files) {
    ByteReader r(f.string());
    while (i < total) {
      const int64_t got = r.read(buf.data(), record);
      if (got == 0) break;
      GSOFT_CHECK(got == record, f.string(), ": truncated record: ", got, " of ", record, " bytes");
      const int64_t label = buf[static_cast<size_t>(label_bytes - 1)];
      GSOFT_CHECK(label < num_classes, f.string(), ": record ", i, " has label ", label, ", expected 0..", num_classes - 1);
      lb[i] = label;
      std::memcpy(px + i * kPixels, buf.data() + label_bytes, kPixels);
      ++i;
    }
  }
  GSOFT_CHECK(i == total, name, ": read ", i, " records, expected ", total, " (a file changed while reading?)");
  d.mean = {0.4914, 0.4822, 0.4465};  // the authors use CIFAR-10's statistics for both
  d.std = {0.2507, 0.2507, 0.2507};
  return d;
}

fs::path find_dir(const std::string& dir, const std::string& sub, const std::string& probe) {
  if (fs::exists(fs::path(dir) / probe)) return dir;
  if (fs::exists(fs::path(dir) / sub / probe)) return fs::path(dir) / sub;
  throw std::runtime_error(dir + ": no " + probe + " (nor " + sub + "/" + probe + ")");
}

}  // namespace

ImageDataset read_idx(const std::string& images_path, const std::string& labels_path, int64_t num_classes) {
  ByteReader ri(images_path);
  const auto dims = idx_header(ri, images_path, 3);
  ByteReader rl(labels_path);
  const auto ldims = idx_header(rl, labels_path, 1);
  GSOFT_CHECK(ldims[0] == dims[0], labels_path, ": ", ldims[0], " labels for the ", dims[0], " images of ", images_path);
  // At most 10M x 4096 x 4096 bytes: no overflow, but far too much to allocate on the header's word.
  const uint64_t pixels = static_cast<uint64_t>(dims[0]) * static_cast<uint64_t>(dims[1]) * static_cast<uint64_t>(dims[2]);
  GSOFT_CHECK(pixels <= kMaxImageBytes, images_path, ": the header announces ", dims[0], " images of ", dims[1], "x", dims[2],
              " (", pixels, " bytes), over the ", kMaxImageBytes, "-byte limit");
  const uint64_t available = ri.most_remaining();
  GSOFT_CHECK(pixels <= available, images_path, ": truncated: the header announces ", dims[0], " images of ", dims[1], "x",
              dims[2], " (", pixels, " bytes), but the file holds at most ", available);
  ImageDataset d;
  d.name = fs::path(images_path).filename().string();
  d.num_classes = num_classes;
  d.images = torch::empty({dims[0], 1, dims[1], dims[2]}, torch::kUInt8);
  ri.read_exactly(d.images.data_ptr<uint8_t>(), d.images.numel(), "pixels");
  GSOFT_CHECK(ri.at_end(), images_path, ": data after the ", dims[0], " images the header announces");
  const torch::Tensor raw = torch::empty({dims[0]}, torch::kUInt8);
  rl.read_exactly(raw.data_ptr<uint8_t>(), raw.numel(), "labels");
  GSOFT_CHECK(rl.at_end(), labels_path, ": data after the ", dims[0], " labels the header announces");
  d.labels = raw.to(torch::kLong);
  check_labels(d.labels, num_classes, labels_path);
  return d;
}

ImageDataset read_cifar10(const std::string& dir, bool train) {
  const fs::path d = find_dir(dir, "cifar-10-batches-bin", train ? "data_batch_1.bin" : "test_batch.bin");
  std::vector<fs::path> files;
  if (train)
    for (int i = 1; i <= 5; ++i) files.push_back(d / ("data_batch_" + std::to_string(i) + ".bin"));
  else
    files.push_back(d / "test_batch.bin");
  return read_cifar(files, 1, 10, "CIFAR-10");
}

ImageDataset read_cifar100(const std::string& dir, bool train) {
  const fs::path d = find_dir(dir, "cifar-100-binary", train ? "train.bin" : "test.bin");
  return read_cifar({d / (train ? "train.bin" : "test.bin")}, 2, 100, "CIFAR-100");
}

std::string default_image_dir(const std::string& name) {
  return name == "fashion-mnist" ? "/usr/share/datasets/fashion-mnist" : "";
}

ImageDataset load_image_dataset(const std::string& name, const std::string& dir_in, bool train) {
  const std::string dir = dir_in.empty() ? default_image_dir(name) : dir_in;
  if (name == "fashion-mnist") {
    const std::string split = train ? "train" : "t10k";
    auto pick = [&](const std::string& base) {
      const fs::path p = fs::path(dir) / base;
      return fs::exists(p.string() + ".gz") || !fs::exists(p) ? p.string() + ".gz" : p.string();
    };
    ImageDataset d = read_idx(pick(split + "-images-idx3-ubyte"), pick(split + "-labels-idx1-ubyte"), 10);
    d.name = "fashion-mnist";
    d.mean = {0.2860};
    d.std = {0.3530};
    return d;
  }
  GSOFT_CHECK(!dir.empty(), name, ": --data DIR is required (the directory of the binary files)");
  if (name == "cifar10") return read_cifar10(dir, train);
  if (name == "cifar100") return read_cifar100(dir, train);
  throw std::invalid_argument("unknown dataset '" + name + "'; expected fashion-mnist, cifar10 or cifar100");
}

ImageDataset pad_images(const ImageDataset& d, int64_t side) {
  const int64_t h = d.images.size(2), w = d.images.size(3);
  GSOFT_CHECK(side >= h && side >= w, d.name, ": cannot pad ", h, "x", w, " images to ", side, "x", side);
  if (side == h && side == w) return d;
  ImageDataset r = d;
  const int64_t top = (side - h) / 2, left = (side - w) / 2;
  r.images = torch::constant_pad_nd(d.images, {left, side - w - left, top, side - h - top}, 0);
  return r;
}

torch::Tensor normalize_images(const torch::Tensor& images, const std::vector<double>& mean, const std::vector<double>& std) {
  const int64_t c = images.size(1);
  GSOFT_CHECK(static_cast<int64_t>(mean.size()) == c && static_cast<int64_t>(std.size()) == c,
              "normalize: ", c, " channels but ", mean.size(), " means and ", std.size(), " standard deviations");
  const auto m = torch::tensor(mean, torch::kDouble).to(torch::kFloat).view({1, c, 1, 1});
  const auto s = torch::tensor(std, torch::kDouble).to(torch::kFloat).view({1, c, 1, 1});
  return (images.to(torch::kFloat) / 255.0 - m) / s;
}

torch::Tensor augment_images(const torch::Tensor& images, int64_t padding, bool flip, uint64_t seed) {
  const int64_t B = images.size(0), H = images.size(2), W = images.size(3);
  const torch::Tensor padded = torch::constant_pad_nd(images, {padding, padding, padding, padding}, 0);
  torch::Tensor out = torch::empty_like(images);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> offset(0, 2 * padding);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t dy = offset(rng), dx = offset(rng);
    torch::Tensor crop = padded[b].narrow(1, dy, H).narrow(2, dx, W);
    if (flip && (rng() & 1)) crop = crop.flip({2});
    out[b].copy_(crop);
  }
  return out;
}

}  // namespace gsoft::data
