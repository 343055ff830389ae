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
