#include "gsoft/io/checkpoint.h"

#include "io/file_util.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

namespace gsoft::io {

namespace fs = std::filesystem;

SafetensorsFile read_checkpoint(const std::string& path) {
  if (!fs::is_directory(path)) return read_safetensors(path);
  const auto single = fs::path(path) / "model.safetensors";
  const auto index = fs::path(path) / "model.safetensors.index.json";
  if (fs::exists(single)) return read_safetensors(single.string());
  if (!fs::exists(index))
    throw std::runtime_error(path + ": no model.safetensors or model.safetensors.index.json in this directory");
  const auto j = parse_json(read_text_file(index.string()), index.string());
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw std::runtime_error(index.string() + ": expected an object with a \"weight_map\" object");
  std::map<std::string, std::vector<std::string>> by_shard;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it->is_string()) throw std::runtime_error(index.string() + ": weight_map entry '" + it.key() + "' is not a file name");
    const auto shard = it->get<std::string>();
    if (shard.find('/') != std::string::npos || shard == "..")
      throw std::runtime_error(index.string() + ": shard name '" + shard + "' must be a file in the same directory");
    by_shard[shard].push_back(it.key());
  }
  SafetensorsFile out;
  for (const auto& [shard, names] : by_shard) {
    auto f = read_safetensors((fs::path(path) / shard).string());
    if (out.metadata.empty()) out.metadata = f.metadata;
    for (const auto& name : names) {
      auto t = f.tensors.find(name);
      if (t == f.tensors.end())
        throw std::runtime_error(index.string() + ": names '" + name + "' in " + shard + ", which has no such tensor");
      out.tensors.emplace(name, t->second);
      out.order.push_back(name);
    }
    for (const auto& [name, t] : f.tensors)
      if (!out.tensors.count(name))
        throw std::runtime_error((fs::path(path) / shard).string() + ": tensor '" + name + "' is not in the index's weight_map");
  }
  return out;
}

}  // namespace gsoft::io
