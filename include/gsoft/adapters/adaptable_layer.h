#pragma once
// What AdaptableLinear and AdaptableConv2d share: one attached adapter, merge/unmerge bookkeeping,
// and the view of the layer's weight as a matrix (out x in_features) that adapters act on.
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "gsoft/adapters/adapter.h"

namespace gsoft {

class AdaptableLayer {
 public:
  virtual ~AdaptableLayer() = default;

  // Columns of the weight matrix the adapter sees (in for Linear, in * kh * kw for Conv2d).
  virtual int64_t adapter_in_features() const = 0;
  virtual int64_t adapter_out_features() const = 0;

  // Attaches an adapter and registers its tensors on this module under their PEFT names.
  // Throws if one is already attached or the sizes differ.
  void attach(std::shared_ptr<LinearAdapter> adapter);
  const std::shared_ptr<LinearAdapter>& adapter() const { return adapter_; }

  // Folds the adapter into the weight. With safe_merge the adapter's tensors and the result are
  // checked for NaN/Inf before anything is written. Idempotent.
  void merge(bool safe_merge = true);
  // Restores the unmerged weight. Idempotent.
  void unmerge();
  bool merged() const { return merged_; }
  // A disabled adapter leaves the layer computing its base function (unmerged weights only).
  void set_adapter_enabled(bool enabled) { enabled_ = enabled; }
  bool adapter_enabled() const { return enabled_; }
  // The shape PEFT stores adapter tensor `name` in for this kind of layer (the tensor's own shape
  // unless a subclass says otherwise).
  virtual std::vector<int64_t> peft_shape(const std::string& name, const torch::Tensor& t) const {
    return t.sizes().vec();
  }

 protected:
  // The module to register adapter tensors on, and its weight as (out, in_features).
  virtual torch::nn::Module& self_module() = 0;
  virtual torch::Tensor weight_matrix() const = 0;
  // Throws when this layer cannot carry an adapter (e.g. a grouped convolution).
  virtual void check_attachable() const {}
  // True when forward should run the adapter.
  bool adapter_active() const;
  // torch::nn::Linear / Conv2d's initialisation: kaiming_uniform(a = sqrt(5)) for the weight,
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias (if defined).
  static void init_like_torch(torch::Tensor& weight, torch::Tensor& bias);

  std::shared_ptr<LinearAdapter> adapter_;
  bool merged_ = false;
  bool enabled_ = true;
};

}  // namespace gsoft
