#include "gsoft/adapters/adaptable_layer.h"

#include <torch/torch.h>

#include <cmath>

#include "gsoft/core/error.h"

namespace gsoft {
namespace {

// Holds tensors whose PEFT names have a dot ("lora_A.weight"): parameter names may not.
struct ParameterHolderImpl : torch::nn::Module {};

}  // namespace

void AdaptableLayer::init_like_torch(torch::Tensor& weight, torch::Tensor& bias) {
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const auto fan_in = std::get<0>(torch::nn::init::_calculate_fan_in_and_fan_out(weight));
    const double bound = 1 / std::sqrt(static_cast<double>(fan_in));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

bool AdaptableLayer::adapter_active() const {
  if (merged_ && !enabled_)
    throw std::logic_error("the adapter is merged into the weight; unmerge before disabling it");
  return adapter_ && enabled_ && !merged_;
}

void AdaptableLayer::attach(std::shared_ptr<LinearAdapter> adapter) {
  GSOFT_CHECK(adapter != nullptr, "attach: null adapter");
  GSOFT_CHECK(!adapter_, "the layer already has a ", to_string(adapter_->method()), " adapter");
  check_attachable();
  auto& self = self_module();
  for (const auto& [name, t] : adapter->named_parameters()) {
    const auto dot = name.find('.');
    if (dot == std::string::npos) {
      self.register_parameter(name, t);
      continue;
    }
    const auto owner = name.substr(0, dot);
    auto children = self.named_children();
    auto holder = children.contains(owner) ? children[owner]
                                           : self.register_module(owner, std::make_shared<ParameterHolderImpl>());
    holder->register_parameter(name.substr(dot + 1), t);
  }
  adapter_ = std::move(adapter);
}

void AdaptableLayer::merge(bool safe_merge) {
  if (!adapter_ || merged_) return;
  if (safe_merge) {
    // Checked at the source too: libtorch's matrix_exp maps a NaN block to finite values.
    for (const auto& [name, t] : adapter_->named_parameters())
      GSOFT_CHECK(torch::isfinite(t).all().item<bool>(), "merge: adapter tensor '", name,
                  "' holds NaN or Inf; the layer was left unmerged");
  }
  auto w = weight_matrix();
  auto merged = adapter_->merged_weight(w);
  if (safe_merge)
    GSOFT_CHECK(torch::isfinite(merged).all().item<bool>(), "merge: the ", to_string(adapter_->method()),
                " adapter produced NaN or Inf weights; the layer was left unmerged");
  torch::NoGradGuard g;
  w.copy_(merged);
  merged_ = true;
}

void AdaptableLayer::unmerge() {
  if (!adapter_ || !merged_) return;
  auto w = weight_matrix();
  auto restored = adapter_->unmerged_weight(w);
  torch::NoGradGuard g;
  w.copy_(restored);
  merged_ = false;
}

}  // namespace gsoft
