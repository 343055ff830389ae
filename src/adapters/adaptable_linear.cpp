#include "gsoft/adapters/adaptable_linear.h"

#include <torch/torch.h>

#include <cmath>

#include "gsoft/core/error.h"

namespace gsoft {
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

void AdaptableLinearImpl::reset_parameters() { init_like_torch(weight, bias); }

torch::Tensor AdaptableLinearImpl::forward(const torch::Tensor& x) {
  if (adapter_active()) return adapter_->forward(x, weight, bias, is_training());
  return torch::nn::functional::linear(x, weight, bias);
}

void AdaptableLinearImpl::pretty_print(std::ostream& stream) const {
  stream << "gsoft::AdaptableLinear(in_features=" << options.in_features()
         << ", out_features=" << options.out_features() << ", bias=" << (options.bias() ? "true" : "false");
  if (adapter_) stream << ", adapter=" << to_string(adapter_->method()) << (merged_ ? " (merged)" : "");
  stream << ")";
}

}  // namespace gsoft
