#pragma once
// safetensors reader and writer (huggingface/safetensors format):
//   8-byte little-endian header length N, N bytes of UTF-8 JSON, then the raw data buffer.
//   JSON maps tensor name -> {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to
//   the data buffer), plus an optional "__metadata__" string -> string map.
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gsoft::io {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;   // CPU tensors owning their memory
  std::map<std::string, std::string> metadata;    // "__metadata__"
  std::vector<std::string> order;                 // names in data-offset order
};

// Largest header accepted (the format's own cap).
constexpr uint64_t kMaxSafetensorsHeader = 100ull * 1024 * 1024;
constexpr size_t kMaxSafetensorsRank = 64;  // dimensions per tensor

// Reads and validates the whole file through mmap. Throws std::runtime_error naming the file and,
// where relevant, the tensor: header length beyond the file or over 100 MB, invalid JSON,
// unknown dtype, shape overflow, dtype x shape not equal to the byte range, offsets outside the
// data or overlapping, duplicate names.
SafetensorsFile read_safetensors(const std::string& path);

// The "__metadata__" map alone (empty when there is none), from the header: the data is not read.
// Throws as read_safetensors does for a bad header.
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

// Writes tensors (any dtype among F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL) in name order,
// header padded with spaces to a multiple of 8. Written to a temporary file in the same directory
// and renamed over `path`, so an existing file is never left half-written.
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F32" etc. <-> torch dtypes. Throws on a dtype the format or gsoft does not support.
std::string safetensors_dtype_name(torch::ScalarType t);
torch::ScalarType safetensors_dtype(const std::string& name);

}  // namespace gsoft::io
