// The one place that lists the adapter methods.
#include <torch/utils.h>

#include "gsoft/core/error.h"
#include "methods.h"

namespace gsoft {

NamedTensors LinearAdapter::named_parameters() const {
  NamedTensors out;
  // slots() hands out member addresses; reading through them does not change the adapter.
  for (const auto& [name, t] : const_cast<LinearAdapter*>(this)->slots()) out.emplace_back(name, *t);
  return out;
}

void LinearAdapter::set_parameter(const std::string& name, const torch::Tensor& tensor) {
  std::vector<std::string> names;
  for (auto& [slot, t] : slots()) {
    if (slot != name) {
      names.push_back(slot);
      continue;
    }
    GSOFT_CHECK(tensor.defined() && tensor.sizes() == t->sizes(), to_string(method()), " adapter tensor '", name,
                "': expected shape ", format_shape(t->sizes()), ", got ",
                tensor.defined() ? format_shape(tensor.sizes()) : std::string("an undefined tensor"));
    GSOFT_CHECK(tensor.is_floating_point(), to_string(method()), " adapter tensor '", name,
                "': expected a floating-point tensor, got ", tensor.dtype().name());
    *t = tensor;
    return;
  }
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  GSOFT_CHECK(false, to_string(method()), " adapter has no tensor '", name, "'; it has: ", list);
}

torch::Tensor LinearAdapter::merged_weight(const torch::Tensor& weight) const {
  torch::NoGradGuard no_grad;
  return adapted_weight(weight.to(torch::kFloat32), /*training=*/false).contiguous();
}

int64_t LinearAdapter::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

std::shared_ptr<LinearAdapter> make_linear_adapter(const AdapterConfig& config, int64_t in_features,
                                                   int64_t out_features, const std::string& module_name) {
  config.validate();
  switch (config.method) {
    case Method::GSOFT:
    case Method::DoubleGSOFT: return adapters::make_gsoft(config, in_features, out_features, module_name);
    case Method::OFT: return adapters::make_oft(config, in_features, out_features, module_name);
    case Method::BOFT: return adapters::make_boft(config, in_features, out_features, module_name);
    case Method::LoRA: return adapters::make_lora(config, in_features, out_features, module_name);
    case Method::Full: break;
  }
  throw std::invalid_argument("method 'full' trains the base weights and has no adapter layer");
}

std::vector<std::string> adapter_tensor_names(const AdapterConfig& config) {
  switch (config.method) {
    case Method::GSOFT:
    case Method::DoubleGSOFT: {
      std::vector<std::string> n{"gsoft_L", "gsoft_R"};
      if (config.method == Method::DoubleGSOFT) n.insert(n.end(), {"gsoft_out_L", "gsoft_out_R"});
      if (config.scale) n.push_back("gsoft_s");
      return n;
    }
    case Method::OFT: return {"oft_R.weight"};
    case Method::BOFT: return {"boft_R", "boft_s"};
    case Method::LoRA: return {"lora_A.weight", "lora_B.weight"};
    case Method::Full: return {};
  }
  return {};
}

namespace adapters {

int64_t resolve_nblocks(const AdapterConfig& c, int64_t features, const std::string& name, const char* side) {
  const std::string where = name.empty() ? std::string(side) : "'" + name + "' " + side;
  if (c.block_size > 0) {
    GSOFT_CHECK(features % c.block_size == 0, to_string(c.method), ": ", where, " features (", features,
                ") must be divisible by block_size (", c.block_size, ")");
    return features / c.block_size;
  }
  GSOFT_CHECK(c.nblocks > 0 && features % c.nblocks == 0, to_string(c.method), ": ", where, " features (",
              features, ") must be divisible by nblocks (", c.nblocks, ")");
  return c.nblocks;
}

}  // namespace adapters
}  // namespace gsoft
