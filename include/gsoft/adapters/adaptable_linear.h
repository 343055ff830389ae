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

#include "gsoft/adapters/adapter.h"

namespace gsoft {

class AdaptableLinearImpl : public torch::nn::Cloneable<AdaptableLinearImpl> {
 public:
  AdaptableLinearImpl(int64_t in_features, int64_t out_features)
      : AdaptableLinearImpl(torch::nn::LinearOptions(in_features, out_features)) {}
  explicit AdaptableLinearImpl(const torch::nn::LinearOptions& options);

  void reset() override;
  void reset_parameters();  // as torch::nn::Linear
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  // Attaches an adapter and registers its tensors. Throws if one is already attached.
  void attach(std::shared_ptr<LinearAdapter> adapter);
  const std::shared_ptr<LinearAdapter>& adapter() const { return adapter_; }

  // Folds the adapter into `weight`. With safe_merge the result is checked for NaN/Inf before
  // anything is written. Idempotent.
  void merge(bool safe_merge = true);
  // Restores the unmerged weight. Idempotent.
  void unmerge();
  bool merged() const { return merged_; }
  // A disabled adapter leaves the layer computing linear(x, W, b) (unmerged weights only).
  void set_adapter_enabled(bool enabled) { enabled_ = enabled; }
  bool adapter_enabled() const { return enabled_; }

  torch::nn::LinearOptions options;
  torch::Tensor weight;
  torch::Tensor bias;

 private:
  std::shared_ptr<LinearAdapter> adapter_;
  bool merged_ = false;
  bool enabled_ = true;
};
TORCH_MODULE(AdaptableLinear);

}  // namespace gsoft
