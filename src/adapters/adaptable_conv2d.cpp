#include "gsoft/adapters/adaptable_conv2d.h"

#include <torch/torch.h>

#include <cmath>

#include "gsoft/core/error.h"

namespace gsoft {
namespace F = torch::nn::functional;

AdaptableConv2dImpl::AdaptableConv2dImpl(const torch::nn::Conv2dOptions& options_) : options(options_) {
  AdaptableConv2dImpl::reset();
}

void AdaptableConv2dImpl::reset() {
  GSOFT_CHECK(options.in_channels() % options.groups() == 0 && options.out_channels() % options.groups() == 0,
              "AdaptableConv2d: in_channels (", options.in_channels(), ") and out_channels (", options.out_channels(),
              ") must be divisible by groups (", options.groups(), ")");
  const auto k = options.kernel_size();
  weight = register_parameter(
      "weight", torch::empty({options.out_channels(), options.in_channels() / options.groups(), k->at(0), k->at(1)}));
  bias = options.bias() ? register_parameter("bias", torch::empty(options.out_channels()))
                        : register_parameter("bias", {}, /*requires_grad=*/false);
  reset_parameters();
}

void AdaptableConv2dImpl::reset_parameters() { init_like_torch(weight, bias); }

int64_t AdaptableConv2dImpl::adapter_in_features() const {
  const auto k = options.kernel_size();
  return options.in_channels() / options.groups() * k->at(0) * k->at(1);
}

std::vector<int64_t> AdaptableConv2dImpl::peft_shape(const std::string& name, const torch::Tensor& t) const {
  const auto k = options.kernel_size();
  if (name == "lora_A.weight") return {t.size(0), options.in_channels() / options.groups(), k->at(0), k->at(1)};
  if (name == "lora_B.weight") return {t.size(0), t.size(1), 1, 1};
  return t.sizes().vec();
}

torch::Tensor AdaptableConv2dImpl::weight_matrix() const { return weight.view({options.out_channels(), -1}); }

void AdaptableConv2dImpl::check_attachable() const {
  GSOFT_CHECK(options.groups() == 1, "AdaptableConv2d: adapters on grouped convolutions (groups=", options.groups(),
              ") are not supported; expected groups=1");
  GSOFT_CHECK(c10::get_if<torch::ExpandingArray<2>>(&options.padding()) != nullptr,
              "AdaptableConv2d: adapters need explicit padding sizes, not padding='same' or 'valid'");
  GSOFT_CHECK(c10::get_if<torch::enumtype::kZeros>(&options.padding_mode()) != nullptr,
              "AdaptableConv2d: adapters need zero padding (padding_mode zeros)");
}

torch::Tensor AdaptableConv2dImpl::forward(const torch::Tensor& x) {
  if (!adapter_active()) {
    return F::detail::conv2d(x, weight, bias, options.stride(), options.padding(), options.dilation(), options.groups());
  }
  GSOFT_CHECK(x.dim() == 4 && x.size(1) == options.in_channels(), "AdaptableConv2d: expected input (N, ",
              options.in_channels(), ", H, W), got ", format_shape(x.sizes()));
  // The adapted weight W' (out x C*kh*kw) costs one pass over the weight's rows, where running
  // the adapter on the input costs one over every patch (k*k times the input): convolve with W'.
  if (const torch::Tensor w = adapter_->adapted_weight(weight_matrix(), is_training()); w.defined())
    return F::detail::conv2d(x, w.reshape(weight.sizes()), bias, options.stride(), options.padding(), options.dilation(),
                             options.groups());
  const auto k = options.kernel_size();
  const auto s = options.stride(), d = options.dilation();
  const auto p = *c10::get_if<torch::ExpandingArray<2>>(&options.padding());
  const int64_t n = x.size(0);
  const int64_t h_out = (x.size(2) + 2 * p->at(0) - d->at(0) * (k->at(0) - 1) - 1) / s->at(0) + 1;
  const int64_t w_out = (x.size(3) + 2 * p->at(1) - d->at(1) * (k->at(1) - 1) - 1) / s->at(1) + 1;
  GSOFT_CHECK(h_out >= 1 && w_out >= 1, "AdaptableConv2d: input ", format_shape(x.sizes()),
              " is smaller than the dilated kernel");
  // LoRA with dropout: patches (N, C*kh*kw, L) -> rows (N, L, C*kh*kw) through the adapter.
  auto patches = F::unfold(x, F::UnfoldFuncOptions({k->at(0), k->at(1)})
                                  .dilation({d->at(0), d->at(1)})
                                  .padding({p->at(0), p->at(1)})
                                  .stride({s->at(0), s->at(1)}));
  auto y = adapter_->forward(patches.transpose(1, 2), weight_matrix(), bias, is_training());
  return y.transpose(1, 2).reshape({n, options.out_channels(), h_out, w_out});
}

void AdaptableConv2dImpl::pretty_print(std::ostream& stream) const {
  const auto k = options.kernel_size();
  stream << "gsoft::AdaptableConv2d(" << options.in_channels() << ", " << options.out_channels()
         << ", kernel_size=[" << k->at(0) << ", " << k->at(1) << "], stride=[" << options.stride()->at(0) << ", "
         << options.stride()->at(1) << "]";
  if (options.groups() != 1) stream << ", groups=" << options.groups();
  if (adapter_) stream << ", adapter=" << to_string(adapter_->method()) << (merged_ ? " (merged)" : "");
  stream << ")";
}

}  // namespace gsoft
