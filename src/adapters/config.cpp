#include "gsoft/adapters/config.h"

#include "gsoft/core/error.h"

namespace gsoft {

std::string to_string(Method m) {
  switch (m) {
    case Method::GSOFT: return "gsoft";
    case Method::DoubleGSOFT: return "double_gsoft";
    case Method::OFT: return "oft";
    case Method::BOFT: return "boft";
    case Method::LoRA: return "lora";
    case Method::Full: return "full";
  }
  return "unknown";
}

Method method_from_string(const std::string& s) {
  for (auto m : {Method::GSOFT, Method::DoubleGSOFT, Method::OFT, Method::BOFT, Method::LoRA, Method::Full})
    if (to_string(m) == s) return m;
  throw std::invalid_argument("unknown method '" + s +
                              "'; expected one of: gsoft, double_gsoft, oft, boft, lora, full");
}

std::string parameter_prefix(Method m) {
  switch (m) {
    case Method::GSOFT:
    case Method::DoubleGSOFT: return "gsoft_";
    case Method::OFT: return "oft_";
    case Method::BOFT: return "boft_";
    case Method::LoRA: return "lora_";
    case Method::Full: return "";
  }
  return "";
}

bool is_adapter_parameter(const std::string& dotted_name) {
  for (auto m : {Method::GSOFT, Method::OFT, Method::BOFT, Method::LoRA})
    if (dotted_name.find("." + parameter_prefix(m)) != std::string::npos) return true;
  return false;
}

void AdapterConfig::validate() const {
  GSOFT_CHECK(method == Method::Full || !target_modules.empty() || !target_regex.empty(),
              to_string(method), ": no targets; set target_modules or target_regex");
  switch (method) {
    case Method::GSOFT:
    case Method::DoubleGSOFT:
    case Method::OFT:
    case Method::BOFT:
      GSOFT_CHECK((block_size > 0) != (nblocks > 0), to_string(method),
                  ": exactly one of block_size and nblocks must be positive, got block_size=",
                  block_size, " nblocks=", nblocks);
      break;
    case Method::LoRA:
      GSOFT_CHECK(r >= 1, "lora: r must be at least 1, got ", r);
      GSOFT_CHECK(lora_dropout >= 0 && lora_dropout < 1, "lora: lora_dropout must be in [0, 1), got ",
                  lora_dropout);
      break;
    case Method::Full: break;
  }
  GSOFT_CHECK(neumann_terms >= 2, "neumann_terms must be at least 2, got ", neumann_terms);
  GSOFT_CHECK(boft_n_butterfly_factor >= 1, "boft_n_butterfly_factor must be at least 1, got ",
              boft_n_butterfly_factor);
}

}  // namespace gsoft
