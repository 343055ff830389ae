#pragma once
// The adapter directory: adapter_config.json + adapter_model.safetensors, in PEFT's layout.
// Tensor keys are "base_model.model.<module path>.<name>" (PEFT with the adapter name removed):
//   gsoft: gsoft_L, gsoft_R (k, b, b), gsoft_s (out), gsoft_out_L, gsoft_out_R (double_gsoft)
//   oft:   oft_R.weight (r, b(b-1)/2)      boft: boft_R (m, N, b, b), boft_s (out, 1)
//   lora:  lora_A.weight (r, in), lora_B.weight (out, r)
// modules_to_save tensors are stored under "base_model.model.<module path>.<param>".
// docs/adapters.md lists every config field and its default.
#include <torch/nn/module.h>

#include <map>
#include <string>
#include <vector>

#include "gsoft/adapters/config.h"
#include "gsoft/adapters/inject.h"

namespace gsoft::io {

constexpr const char* kAdapterConfigFile = "adapter_config.json";
constexpr const char* kAdapterModelFile = "adapter_model.safetensors";
constexpr const char* kPeftKeyPrefix = "base_model.model.";

// adapter_config.json text <-> AdapterConfig, with PEFT's field names; `origin` names the file in
// errors. Missing optional fields take PEFT's defaults (the authors' code's for GSOFT).
std::string adapter_config_to_json(const AdapterConfig& config);
AdapterConfig adapter_config_from_json(const std::string& text, const std::string& origin = "adapter_config.json");

// Writes the directory (created if needed). Each file is written atomically.
void save_adapter(const std::string& dir, torch::nn::Module& root, const AdapterConfig& config);

// Writes the directory from tensors already keyed as in the file ("base_model.model.<path>.<name>");
// the config is validated first. What save_adapter and the Python module write through.
void write_adapter(const std::string& dir, const std::map<std::string, torch::Tensor>& tensors,
                   const AdapterConfig& config);

struct LoadedAdapter {
  AdapterConfig config;
  std::map<std::string, torch::Tensor> tensors;  // keys as in the file
};
// Reads and validates the directory (config, tensor names belonging to the method).
LoadedAdapter read_adapter(const std::string& dir);

// Injects the adapter into `root` and loads its tensors; every shape is checked against the
// model, and a tensor for a module the model lacks is an error naming it.
InjectionReport load_adapter(const std::string& dir, torch::nn::Module& root);

// The file's tensors, split: per adapted module, its adapter tensors (names relative to the
// module); and the modules_to_save tensors, keyed by their model name (prefix removed).
struct AdapterTensors {
  std::map<std::string, std::map<std::string, torch::Tensor>> modules;
  std::map<std::string, torch::Tensor> saved;
};
AdapterTensors split_adapter_tensors(const LoadedAdapter& adapter);

struct MergeReport {
  std::vector<std::string> merged_modules;
  std::vector<std::string> saved_modules_tensors;  // modules_to_save tensors written
  int64_t copied_tensors = 0;
};

// Merges the adapter into a plain checkpoint's tensors, without a model definition: for each
// adapted module M, M.weight becomes the merged weight (float32 arithmetic, original dtype kept);
// modules_to_save tensors replace or join the base's; every other tensor is unchanged.
std::map<std::string, torch::Tensor> merge_checkpoint(const std::map<std::string, torch::Tensor>& base,
                                                      const LoadedAdapter& adapter, MergeReport* report = nullptr);

// Merges `adapter_dir` into the checkpoint at `base` (file or directory) and writes `out`:
// a .safetensors file, or (when `out` is an existing directory or has no .safetensors suffix) a
// directory holding model.safetensors plus every other file of a base directory (config.json,
// tokenizer files), so the result loads like the base; an adapter directory's own config.json (written
// by `gsoft train`: labels and head) replaces the base's. Each file is written atomically.
MergeReport merge_to(const std::string& base, const std::string& adapter_dir, const std::string& out);

}  // namespace gsoft::io
