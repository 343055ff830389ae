#pragma once
// Walks a module tree, attaches adapters to every AdaptableLinear or AdaptableConv2d whose dotted name matches the
// config's targets, and freezes everything else except modules_to_save.
#include <torch/nn/module.h>

#include <functional>
#include <string>
#include <vector>

#include "gsoft/adapters/config.h"

namespace gsoft {

struct AdaptedModule {
  std::string name;
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t trainable_params = 0;
};

struct InjectionReport {
  std::vector<AdaptedModule> adapted;       // in tree order
  std::vector<std::string> saved_modules;   // modules_to_save that matched
  int64_t adapter_params = 0;               // sum over `adapted`
  int64_t trainable_params = 0;             // every parameter left requiring grad
  int64_t total_params = 0;
  std::string to_string() const;            // a table, one line per module, then totals
};

// True when `name` equals `suffix` or ends with "." + suffix (PEFT's target matching).
bool name_matches_suffix(const std::string& name, const std::string& suffix);
// Whether the config targets this module name (suffixes or regex, minus exclusions).
bool is_target(const AdapterConfig& config, const std::string& name);

// Throws if nothing matched (naming the targets), or if a target is not an AdaptableLinear
// (naming the module and its type) is not an adaptable layer. For method `full` nothing is attached and every parameter
// is trainable.
InjectionReport inject_adapters(torch::nn::Module& root, const AdapterConfig& config);

class AdaptableLayer;
// Calls f(name, layer) for every adaptable layer with an attached adapter, in tree order.
void for_each_adapted_layer(torch::nn::Module& root,
                            const std::function<void(const std::string&, AdaptableLayer&)>& f);

// Folds every attached adapter into its layer's weight (or takes it out again).
void merge_adapters(torch::nn::Module& root, bool safe_merge = true);
void unmerge_adapters(torch::nn::Module& root);

}  // namespace gsoft
