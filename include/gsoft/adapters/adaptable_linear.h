#pragma once
// AdaptableLinear: a drop-in torch::nn::Linear (same options, same `weight`/`bias` names and
// initialisation) to which an adapter can be attached in place.
//
// libtorch cannot swap a child module from under its parent: the parent's typed member (and
// Sequential's list) keeps calling the old module. So models built to be adapted use this layer,
// and inject_adapters attaches adapters to it. The adapter's tensors are registered on this
// module under PEFT's names, so state-dict keys read "<path>.gsoft_L", "<path>.lora_A.weight".
#include <torch/nn/cloneable.h>
#include <torch/nn/options/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>

#include "gsoft/adapters/adaptable_layer.h"

namespace gsoft {

class AdaptableLinearImpl : public torch::nn::Cloneable<AdaptableLinearImpl>, public AdaptableLayer {
 public:
  AdaptableLinearImpl(int64_t in_features, int64_t out_features)
      : AdaptableLinearImpl(torch::nn::LinearOptions(in_features, out_features)) {}
  explicit AdaptableLinearImpl(const torch::nn::LinearOptions& options);

  void reset() override;
  void reset_parameters();  // as torch::nn::Linear
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  int64_t adapter_in_features() const override { return options.in_features(); }
  int64_t adapter_out_features() const override { return options.out_features(); }

  torch::nn::LinearOptions options;
  torch::Tensor weight;
  torch::Tensor bias;

 protected:
  torch::nn::Module& self_module() override { return *this; }
  torch::Tensor weight_matrix() const override { return weight; }
};
TORCH_MODULE(AdaptableLinear);

}  // namespace gsoft
