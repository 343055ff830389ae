#pragma once
// Plain model checkpoints in Hugging Face layout.
#include <string>

#include "gsoft/io/safetensors.h"

namespace gsoft::io {

// `path` is a .safetensors file, or a directory holding model.safetensors or a sharded
// model.safetensors.index.json (whose weight_map names the shard of every tensor). Shards are
// read once each; a tensor in two shards, or one the index names but its shard lacks, is an
// error naming both.
SafetensorsFile read_checkpoint(const std::string& path);

}  // namespace gsoft::io
