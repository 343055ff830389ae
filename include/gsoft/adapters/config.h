#pragma once
// AdapterConfig says *what* to adapt and how; it is saved as adapter_config.json with PEFT's field
// names (see io/adapter_io.h). Defaults follow PEFT, or the authors' code for GSOFT.
#include <cstdint>
#include <string>
#include <vector>

#include "gsoft/gs/chain.h"
#include "gsoft/ortho/block_maps.h"

namespace gsoft {

enum class Method { GSOFT, DoubleGSOFT, OFT, BOFT, LoRA, Full };

// "gsoft", "double_gsoft", "oft", "boft", "lora", "full".
std::string to_string(Method m);
// Throws listing the accepted names.
Method method_from_string(const std::string& s);
// The method-specific prefix of adapter parameter names ("gsoft_", "oft_", "boft_", "lora_").
std::string parameter_prefix(Method m);
// Whether a dotted parameter name belongs to an adapter: some component after the first starts
// with a method's prefix ("encoder.query.gsoft_L", "query.lora_A.weight").
bool is_adapter_parameter(const std::string& dotted_name);

struct AdapterConfig {
  Method method = Method::GSOFT;

  // Targets: a module is adapted when its dotted name equals or ends with ".<t>" for some t in
  // target_modules, or (if target_regex is set) when the whole name matches the regex.
  std::vector<std::string> target_modules;
  std::string target_regex;
  std::vector<std::string> exclude_modules;  // suffixes, never adapted
  std::vector<std::string> modules_to_save;  // suffixes of modules trained in full and saved

  // GS family (gsoft, double_gsoft, oft, boft): exactly one of block_size and nblocks > 0.
  // For double_gsoft, nblocks gives both sides that many blocks (the authors' code);
  // block_size gives both sides that block size.
  int64_t block_size = 0;
  int64_t nblocks = 0;
  Parametrization parametrization = Parametrization::Cayley;  // gsoft / double_gsoft
  int64_t neumann_terms = 5;       // cayley_neumann terms (gsoft) / num_cayley_neumann_terms (oft)
  Layout layout = Layout::Official;
  bool scale = true;               // gsoft / double_gsoft magnitude vector gsoft_s

  // OFT (PEFT >= 0.16 format): the Cayley-Neumann series is PEFT's default.
  bool use_cayley_neumann = true;

  // BOFT.
  int64_t boft_n_butterfly_factor = 1;

  // LoRA.
  int64_t r = 8;
  double lora_alpha = 8.0;
  double lora_dropout = 0.0;

  // Initialise adapters to the identity (PEFT's init_weights=True).
  bool init_weights = true;

  // Throws std::invalid_argument naming the field, the expected and the actual value.
  void validate() const;
};

}  // namespace gsoft
