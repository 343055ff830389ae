#include "gsoft/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "gsoft/core/error.h"
#include "gsoft/io/atomic_file.h"
#include "io/file_util.h"

namespace gsoft::io {
namespace {

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  int64_t size;
};

const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
      data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (data_ == MAP_FAILED) fail(path, std::string("cannot mmap: ") + std::strerror(errno));
    }
  }
  ~MappedFile() {
    if (data_ && data_ != MAP_FAILED) ::munmap(data_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(data_); }
  uint64_t size() const { return size_; }

 private:
  int fd_ = -1;
  void* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace

std::string safetensors_dtype_name(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw std::invalid_argument(std::string("safetensors: unsupported dtype ") + c10::toString(t));
}

torch::ScalarType safetensors_dtype(const std::string& name) {
  if (const auto* d = find_dtype(name)) return d->type;
  throw std::invalid_argument("safetensors: unknown dtype '" + name +
                              "'; expected one of: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");
}

namespace {

// The validated JSON header of a mapped file, and its length in bytes.
std::pair<nlohmann::json, uint64_t> read_header(const MappedFile& file, const std::string& path) {
  if (file.size() < 8) fail(path, "file is " + std::to_string(file.size()) + " bytes, too short for a safetensors header (8 bytes)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file.data()[i];
  if (n > kMaxSafetensorsHeader)
    fail(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > file.size() - 8)
    fail(path, "header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(file.size()) + " bytes)");
  const char* hbegin = reinterpret_cast<const char*>(file.data() + 8);
  std::set<std::string> names;
  // nlohmann keeps the last of duplicate keys silently; the format forbids them, so catch them here.
  auto header = parse_json(hbegin, hbegin + n, path, [&](const std::string& key) {
    if (!names.insert(key).second) fail(path, "duplicate tensor name '" + key + "'");
  });
  if (!header.is_object()) fail(path, "header must be a JSON object");
  return {std::move(header), n};
}

std::map<std::string, std::string> parse_metadata(const nlohmann::json& m, const std::string& path) {
  if (!m.is_object()) fail(path, "__metadata__ must be an object of strings");
  std::map<std::string, std::string> out;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it->is_string()) fail(path, "__metadata__ value for '" + it.key() + "' is not a string");
    out[it.key()] = it->get<std::string>();
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  MappedFile file(path);
  const auto [header, n] = read_header(file, path);
  const auto it = header.find("__metadata__");
  return it == header.end() ? std::map<std::string, std::string>{} : parse_metadata(*it, path);
}

SafetensorsFile read_safetensors(const std::string& path) {
  MappedFile file(path);
  const auto [header, n] = read_header(file, path);
  const uint64_t data_size = file.size() - 8 - n;
  const uint8_t* data = file.data() + 8 + n;

  SafetensorsFile out;
  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      out.metadata = parse_metadata(*it, path);
      continue;
    }
    if (out.tensors.count(name)) fail(path, "duplicate tensor name '" + name + "'");
    const auto& e = *it;
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      fail(path, "tensor '" + name + "' needs dtype, shape and data_offsets");
    if (!e["dtype"].is_string()) fail(path, "tensor '" + name + "': dtype is not a string");
    const auto* dt = find_dtype(e["dtype"].get<std::string>());
    if (!dt) fail(path, "tensor '" + name + "': unknown dtype '" + e["dtype"].get<std::string>() + "'");
    if (!e["shape"].is_array()) fail(path, "tensor '" + name + "': shape is not an array");
    std::vector<int64_t> shape;
    if (e["shape"].size() > kMaxSafetensorsRank)
      fail(path, "tensor '" + name + "': " + std::to_string(e["shape"].size()) + " dimensions, expected at most " +
                     std::to_string(kMaxSafetensorsRank));
    // The product of the non-zero dimensions stays below 2^62, so neither the byte count below nor
    // torch's own size arithmetic can wrap; a zero dimension does not excuse the others.
    constexpr uint64_t kLimit = uint64_t(1) << 62;
    uint64_t nonzero = 1;
    bool empty = false;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned()) fail(path, "tensor '" + name + "': shape entries must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      if (v != 0 && nonzero > kLimit / v)
        fail(path, "tensor '" + name + "': shape " + e["shape"].dump() + " overflows (element count over 2^62)");
      if (v == 0) empty = true;
      else nonzero *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    const uint64_t numel = empty ? 0 : nonzero;
    if (numel > data_size / static_cast<uint64_t>(dt->size))
      fail(path, "tensor '" + name + "': " + dt->name + " " + format_shape(shape) + " needs " + std::to_string(numel) +
                     " elements of " + std::to_string(dt->size) + " bytes, more than the " + std::to_string(data_size) +
                     "-byte data buffer holds");
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(path, "tensor '" + name + "': data_offsets must be two non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_size)
      fail(path, "tensor '" + name + "': data_offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                     ") outside the data buffer of " + std::to_string(data_size) + " bytes");
    const uint64_t expect = numel * static_cast<uint64_t>(dt->size);
    if (en - b != expect)
      fail(path, "tensor '" + name + "': " + dt->name + " " + format_shape(shape) + " needs " +
                     std::to_string(expect) + " bytes, data_offsets give " + std::to_string(en - b));
    ranges.push_back({b, en, name});
    auto t = torch::empty(shape, torch::TensorOptions().dtype(dt->type));
    if (expect) std::memcpy(t.data_ptr(), data + b, expect);
    out.tensors.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      fail(path, "tensors '" + ranges[i - 1].name + "' and '" + ranges[i].name + "' overlap");
  for (const auto& r : ranges) out.order.push_back(r.name);
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    GSOFT_CHECK(name != "__metadata__", "safetensors: '__metadata__' is reserved, not a tensor name");
    GSOFT_CHECK(t.defined(), "safetensors: tensor '", name, "' is undefined");
    auto c = t.detach().cpu().contiguous();
    const uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  AtomicFile out(path);
  uint8_t len[8];
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(len, 8);
  out.write(h.data(), h.size());
  for (const auto& c : contiguous)
    out.write(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
  out.commit();
}

}  // namespace gsoft::io
