#include "gsoft/adapters/adaptable_linear.h"

#include <torch/torch.h>

#include <cmath>

#include "gsoft/core/error.h"

namespace gsoft {
namespace {

// Holds tensors whose PEFT names have a dot ("lora_A.weight"): parameter names may not.
struct ParameterHolderImpl : torch::nn::Module {};

}  // namespace

AdaptableLinearImpl::AdaptableLinearImpl(const torch::nn::LinearOptions& options_) : options(options_) {
  AdaptableLinearImpl::reset();
}

void AdaptableLinearImpl::reset() {
  weight = register_parameter("weight", torch::empty({options.out_features(), options.in_features()}));
  if (options.bias()) {
    bias = register_parameter("bias", torch::empty(options.out_features()));
  } else {
    bias = register_parameter("bias", {}, /*requires_grad=*/false);
  }
  reset_parameters();
}

void AdaptableLinearImpl::reset_parameters() {
  // The same initialisation as torch::nn::Linear.
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const auto fan_in = std::get<0>(torch::nn::init::_calculate_fan_in_and_fan_out(weight));
    const double bound = 1 / std::sqrt(static_cast<double>(fan_in));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

torch::Tensor AdaptableLinearImpl::forward(const torch::Tensor& x) {
  if (adapter_ && enabled_ && !merged_) return adapter_->forward(x, weight, bias, is_training());
  if (merged_ && !enabled_)
    throw std::logic_error("AdaptableLinear: the adapter is merged into the weight; unmerge before disabling it");
  return torch::nn::functional::linear(x, weight, bias);
}

void AdaptableLinearImpl::pretty_print(std::ostream& stream) const {
  stream << "gsoft::AdaptableLinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << (options.bias() ? "true" : "false");
  if (adapter_) stream << ", adapter=" << to_string(adapter_->method()) << (merged_ ? " (merged)" : "");
  stream << ")";
}

void AdaptableLinearImpl::attach(std::shared_ptr<LinearAdapter> adapter) {
  GSOFT_CHECK(adapter != nullptr, "AdaptableLinear::attach: null adapter");
  GSOFT_CHECK(!adapter_, "AdaptableLinear already has a ", to_string(adapter_->method()), " adapter");
  for (const auto& [name, t] : adapter->named_parameters()) {
    const auto dot = name.find('.');
    if (dot == std::string::npos) {
      register_parameter(name, t);
      continue;
    }
    const auto owner = name.substr(0, dot);
    auto children = named_children();
    auto holder = children.contains(owner) ? children[owner]
                                           : register_module(owner, std::make_shared<ParameterHolderImpl>());
    holder->register_parameter(name.substr(dot + 1), t);
  }
  adapter_ = std::move(adapter);
}

void AdaptableLinearImpl::merge(bool safe_merge) {
  if (!adapter_ || merged_) return;
  if (safe_merge) {
    // Checked at the source too: libtorch's matrix_exp maps a NaN block to finite values.
    for (const auto& [name, t] : adapter_->named_parameters())
      GSOFT_CHECK(torch::isfinite(t).all().item<bool>(), "merge: adapter tensor '", name,
                  "' holds NaN or Inf; the layer was left unmerged");
  }
  auto w = adapter_->merged_weight(weight);
  if (safe_merge)
    GSOFT_CHECK(torch::isfinite(w).all().item<bool>(), "merge: the ", to_string(adapter_->method()),
                " adapter produced NaN or Inf weights; the layer was left unmerged");
  torch::NoGradGuard g;
  weight.copy_(w);
  merged_ = true;
}

void AdaptableLinearImpl::unmerge() {
  if (!adapter_ || !merged_) return;
  auto w = adapter_->unmerged_weight(weight);
  torch::NoGradGuard g;
  weight.copy_(w);
  merged_ = false;
}

}  // namespace gsoft
