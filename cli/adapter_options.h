#pragma once
// The flags that choose and size an adapter (train, bench train, compare), with the paper's GLUE
// settings as defaults: GSOFT b = 8, OFT b = 16, BOFT b = 8 with 2 factors, LoRA r = 8.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "gsoft/adapters/config.h"

namespace gsoft::cli {

// Every linear layer of attention and MLP, as in the paper (PEFT suffixes: "output.dense" also
// matches "attention.output.dense").
inline const std::vector<std::string>& default_encoder_targets() {
  static const std::vector<std::string> t{"query", "key", "value", "attention.output.dense", "intermediate.dense",
                                          "output.dense"};
  return t;
}

struct AdapterOptions {
  std::string method = "gsoft";
  int64_t block_size = 0;  // 0: the method's default
  int64_t nblocks = 0;
  int64_t boft_factors = 0;
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0;
  std::string parametrization = "cayley";
  bool no_scale = false;
  std::vector<std::string> target_modules;
  std::vector<std::string> modules_to_save{"classifier"};
};

inline void add_adapter_options(CLI::App* cmd, AdapterOptions& o) {
  cmd->add_option("--method", o.method, "gsoft, double_gsoft, oft, boft, lora or full")
      ->capture_default_str()
      ->check(CLI::IsMember({"gsoft", "double_gsoft", "oft", "boft", "lora", "full"}));
  cmd->add_option("--block-size", o.block_size, "Orthogonal block size (default: gsoft/double_gsoft/boft 8, oft 16)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--nblocks", o.nblocks, "Number of blocks instead of --block-size")->check(CLI::NonNegativeNumber);
  cmd->add_option("--boft-factors", o.boft_factors, "BOFT butterfly factors (default 2)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--r", o.r, "LoRA rank")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lora-alpha", o.lora_alpha, "LoRA alpha")->capture_default_str();
  cmd->add_option("--lora-dropout", o.lora_dropout, "LoRA dropout")->capture_default_str();
  cmd->add_option("--parametrization", o.parametrization, "GSOFT block map: cayley, exp, cayley_neumann or free")
      ->capture_default_str()
      ->check(CLI::IsMember({"cayley", "exp", "cayley_neumann", "free"}));
  cmd->add_flag("--no-scale", o.no_scale, "GSOFT without the magnitude vector gsoft_s");
  // A command may preset other targets (the diffusion commands: the authors' to_q,to_k,to_v,to_out.0).
  std::string targets;
  for (const auto& t : o.target_modules.empty() ? default_encoder_targets() : o.target_modules)
    targets += (targets.empty() ? "" : ",") + t;
  cmd->add_option("--target-modules", o.target_modules, "Module name suffixes to adapt (default: " + targets + ")")
      ->delimiter(',');
  cmd->add_option("--modules-to-save", o.modules_to_save, "Modules trained in full and saved with the adapter")
      ->capture_default_str()
      ->delimiter(',');
}

inline AdapterConfig to_adapter_config(const AdapterOptions& o) {
  AdapterConfig c;
  c.method = method_from_string(o.method);
  c.target_modules = o.target_modules.empty() ? default_encoder_targets() : o.target_modules;
  c.modules_to_save = o.modules_to_save;
  if (c.method == Method::Full) c.target_modules.clear();
  const bool gs_family = c.method != Method::LoRA && c.method != Method::Full;
  if (gs_family) {
    c.nblocks = o.nblocks;
    c.block_size = o.nblocks > 0 ? 0 : o.block_size > 0 ? o.block_size : c.method == Method::OFT ? 16 : 8;
  }
  if (c.method == Method::BOFT) c.boft_n_butterfly_factor = o.boft_factors > 0 ? o.boft_factors : 2;
  c.parametrization = parametrization_from_string(o.parametrization);
  c.scale = !o.no_scale;
  c.r = o.r;
  c.lora_alpha = o.lora_alpha;
  c.lora_dropout = o.lora_dropout;
  c.validate();
  return c;
}

// A checkpoint without some of the tensors the classifier uses (the head, BERT's pooler when the
// checkpoint is a masked-LM one) starts those from random: train them in full with the adapter.
inline std::vector<std::string> train_missing_modules(AdapterConfig& config, const std::vector<std::string>& missing) {
  std::vector<std::string> added;
  for (const auto& name : missing) {
    const size_t p = name.find("pooler.");
    if (p == std::string::npos) continue;
    const std::string module = name.substr(0, p) + "pooler";
    if (std::find(config.modules_to_save.begin(), config.modules_to_save.end(), module) == config.modules_to_save.end()) {
      config.modules_to_save.push_back(module);
      added.push_back(module);
    }
  }
  return added;
}

}  // namespace gsoft::cli
