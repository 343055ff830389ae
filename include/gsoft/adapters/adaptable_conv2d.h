#pragma once
// AdaptableConv2d: a drop-in torch::nn::Conv2d (same options, same `weight`/`bias` names and
// initialisation) to which an adapter can be attached in place.
//
// An adapter sees the weight as a matrix out x (in * kh * kw) and acts on input patches: the
// input is unfolded into patches (with the layer's stride, padding and dilation), each patch is
// a row through the adapter, and the rows are laid back out as the output map. So the adapted
// layer is exactly conv2d with the merged weight, and the identity at initialisation, for any
// input size and any (non-square) kernel. Grouped convolutions and padding other than explicit
// zeros are refused when an adapter is attached.
#include <torch/nn/cloneable.h>
#include <torch/nn/options/conv.h>
#include <torch/nn/pimpl.h>

#include "gsoft/adapters/adaptable_layer.h"

namespace gsoft {

class AdaptableConv2dImpl : public torch::nn::Cloneable<AdaptableConv2dImpl>, public AdaptableLayer {
 public:
  AdaptableConv2dImpl(int64_t in_channels, int64_t out_channels, torch::ExpandingArray<2> kernel_size)
      : AdaptableConv2dImpl(torch::nn::Conv2dOptions(in_channels, out_channels, kernel_size)) {}
  explicit AdaptableConv2dImpl(const torch::nn::Conv2dOptions& options);

  void reset() override;
  void reset_parameters();  // as torch::nn::Conv2d
  // x: (N, C, H, W) -> (N, out, H', W')
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  int64_t adapter_in_features() const override;
  int64_t adapter_out_features() const override { return options.out_channels(); }
  // PEFT keeps conv LoRA as convolutions: lora_A.weight (r, in, kh, kw), lora_B.weight (out, r, 1, 1).
  std::vector<int64_t> peft_shape(const std::string& name, const torch::Tensor& t) const override;

  torch::nn::Conv2dOptions options;
  torch::Tensor weight;  // (out, in / groups, kh, kw)
  torch::Tensor bias;

 protected:
  torch::nn::Module& self_module() override { return *this; }
  torch::Tensor weight_matrix() const override;
  void check_attachable() const override;
};
TORCH_MODULE(AdaptableConv2d);

}  // namespace gsoft
