#pragma once
// A LinearAdapter changes what a linear layer with weight W (out x in) and bias b computes, and
// knows how to fold that change into W (merge) and take it out again (unmerge).
#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gsoft/adapters/config.h"

namespace gsoft {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  virtual Method method() const = 0;
  // Trainable tensors with their names relative to the adapted module, in PEFT's spelling
  // ("gsoft_L", "boft_s", "lora_A.weight", "oft_R.weight").
  NamedTensors named_parameters() const;
  // Makes `tensor` the adapter's tensor `name` (same shape; any floating dtype), so that a tensor
  // owned elsewhere (a Python nn.Parameter) is the one forward() reads and gradients reach.
  // Throws naming the tensor when the name or the shape does not match.
  void set_parameter(const std::string& name, const torch::Tensor& tensor);
  // x: (..., in) -> (..., out), the adapted layer's output. `training` switches dropout.
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& weight,
                                const torch::Tensor& bias, bool training) const = 0;
  // The weight W' with linear(x, W', b) == forward(x, W, b), as a differentiable function of the
  // adapter's tensors: a layer whose input rows are costly (a convolution's patches, k*k times the
  // input) trains through W' instead of running the adapter on every row. Undefined when forward
  // is not linear(x, W', b) for one W' (LoRA's dropout while training).
  virtual torch::Tensor adapted_weight(const torch::Tensor& weight, bool training) const = 0;
  // adapted_weight in float32 without autograd: what merge folds into the layer.
  torch::Tensor merged_weight(const torch::Tensor& weight) const;
  // Inverse of merged_weight.
  virtual torch::Tensor unmerged_weight(const torch::Tensor& merged) const = 0;
  int64_t num_parameters() const;

 protected:
  // The adapter's tensor members by name: the one list behind named_parameters and set_parameter.
  using Slots = std::vector<std::pair<std::string, torch::Tensor*>>;
  virtual Slots slots() = 0;
};

// The names of the tensors an adapter of this config holds (as named_parameters() reports them).
std::vector<std::string> adapter_tensor_names(const AdapterConfig& config);

// Builds the adapter `config.method` for a layer with the given sizes (the registry; `full` has
// no adapter and is refused here). Throws naming the layer when the sizes do not fit the config.
std::shared_ptr<LinearAdapter> make_linear_adapter(const AdapterConfig& config, int64_t in_features,
                                                   int64_t out_features,
                                                   const std::string& module_name = "");

}  // namespace gsoft
