#include "gsoft/conv/lipconvnet.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "gsoft/core/error.h"

namespace gsoft::conv {

ConvKind parse_conv_kind(const std::string& name) {
  if (name == "soc") return ConvKind::SOC;
  if (name == "gs-soc") return ConvKind::GSSOC;
  throw std::invalid_argument("unknown conv '" + name + "'; expected soc or gs-soc");
}

std::string conv_kind_name(ConvKind k) { return k == ConvKind::SOC ? "soc" : "gs-soc"; }

std::string LipConvNetOptions::describe() const {
  if (conv() == ConvKind::SOC) return "soc";
  return "gs-soc (" + std::to_string(groups1()) + "," + (groups2() > 0 ? std::to_string(groups2()) : "-") + ")";
}

int64_t count_trainable_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

LipConvNetImpl::LipConvNetImpl(const LipConvNetOptions& o) : options(o) { reset(); }

void LipConvNetImpl::reset() {
  const auto& o = options;
  GSOFT_CHECK(o.depth() >= 5 && o.depth() % 5 == 0, "LipConvNet: depth must be a positive multiple of 5, got ", o.depth());
  GSOFT_CHECK(o.input_size() >= 32 && o.input_size() % 32 == 0,
              "LipConvNet: input size must be a multiple of 32 (five stride-2 levels), got ", o.input_size());
  GSOFT_CHECK(o.in_channels() >= 1 && o.num_classes() >= 2 && o.init_channels() >= 2 && o.init_channels() % 2 == 0,
              "LipConvNet: expected in_channels >= 1, num_classes >= 2 and an even init_channels, got ", o.in_channels(),
              ", ", o.num_classes(), ", ", o.init_channels());
  GSOFT_CHECK(o.depth() <= 1000 && o.init_channels() <= 4096 && o.in_channels() <= 4096 && o.input_size() <= 4096 &&
                  o.num_classes() <= (int64_t{1} << 20),
              "LipConvNet: expected depth <= 1000, init_channels, in_channels and input size <= 4096 and num_classes <= 2^20, got ",
              o.depth(), ", ", o.init_channels(), ", ", o.in_channels(), ", ", o.input_size(), ", ", o.num_classes());
  // One walk over the levels gives every block's shape: first to bound the parameter count before
  // anything is allocated (a lipconvnet.json is read from disk), then to build the blocks.
  struct BlockShape {
    int64_t in, out, kernel, stride;
  };
  std::vector<BlockShape> shapes;
  const int64_t per_level = o.depth() / 5;
  int64_t in = o.in_channels(), planes = o.init_channels();
  for (int64_t level = 0; level < 5; ++level) {
    for (int64_t b = 0; b < per_level; ++b) {
      const bool last_block = b == per_level - 1;
      const int64_t stride = last_block ? 2 : 1, kernel = (last_block && level == 4) ? 1 : 3;
      shapes.push_back({in, planes * stride, kernel, stride});
      in = planes * stride;
    }
    planes = in;
  }
  const int64_t side = o.input_size() / 32, features = in * side * side;
  // SOC's kernel is square in max(in, out).
  auto square = [](double in, double out, double kernel) { return std::max(in, out) * std::max(in, out) * kernel * kernel; };
  double params = square(static_cast<double>(features), static_cast<double>(o.num_classes()), 1);
  for (const auto& b : shapes)
    params += square(static_cast<double>(b.in), static_cast<double>(b.out), static_cast<double>(b.kernel));
  GSOFT_CHECK(params <= kMaxLipConvNetParams, "LipConvNet: about ", static_cast<int64_t>(params),
              " parameters, over the limit of ", kMaxLipConvNetParams);

  blocks = register_module("blocks", torch::nn::ModuleList());
  for (const auto& b : shapes) {
    if (o.conv() == ConvKind::SOC) {
      blocks->push_back(SOC(SOCOptions(b.in, b.out).kernel_size(b.kernel).stride(b.stride).train_terms(o.train_terms())
                                .eval_terms(o.eval_terms()).init_iters(o.init_iters())));
    } else {
      blocks->push_back(GSSOC(GSSOCOptions(b.in, b.out).kernel_size(b.kernel).stride(b.stride).groups1(o.groups1())
                                  .groups2(o.groups2()).paired(o.paired()).layout(o.layout())
                                  .train_terms(o.train_terms()).eval_terms(o.eval_terms())
                                  .init_iters(o.init_iters())));
    }
  }
  last = register_module("last", SOC(SOCOptions(features, o.num_classes()).kernel_size(1)
                                         .train_terms(o.train_terms()).eval_terms(o.eval_terms())
                                    .init_iters(o.init_iters())));
}

torch::Tensor LipConvNetImpl::forward(const torch::Tensor& input) {
  const auto& o = options;
  GSOFT_CHECK(input.dim() == 4 && input.size(1) == o.in_channels() && input.size(2) == o.input_size() &&
                  input.size(3) == o.input_size(),
              "LipConvNet: expected input (batch, ", o.in_channels(), ", ", o.input_size(), ", ", o.input_size(), "), got ",
              format_shape(input.sizes()));
  torch::Tensor x = input;
  for (const auto& m : *blocks) {
    if (auto* s = m->as<SOCImpl>()) x = s->forward(x);
    else x = m->as<GSSOCImpl>()->forward(x);
    x = apply_activation(o.activation(), x);
  }
  // A larger input leaves a side x side map: fold it into channels (a permutation, so still
  // 1-Lipschitz) for the final 1x1 layer.
  x = x.reshape({x.size(0), -1, 1, 1});
  return last->forward(x).flatten(1);
}

std::vector<LipConvNetImpl::LayerInfo> LipConvNetImpl::layers() const {
  std::vector<LayerInfo> r;
  int64_t size = options.input_size(), i = 0;
  for (const auto& m : *blocks) {
    const SOCOptions* so = nullptr;
    std::string kind = "SOC";
    if (auto* s = m->as<SOCImpl>()) {
      so = &s->options;
    } else {
      auto* g = m->as<GSSOCImpl>();
      so = &g->soc1->options;
      kind = "GS-SOC (" + std::to_string(g->options.groups1()) + "," +
             (g->options.groups2() > 0 ? std::to_string(g->options.groups2()) : "-") + ")";
    }
    r.push_back({"blocks." + std::to_string(i++), kind, so->in_channels(), so->out_channels(), so->kernel_size(),
                 so->stride(), size, count_trainable_parameters(*m)});
    size /= so->stride();
  }
  r.push_back({"last", "SOC", last->options.in_channels(), last->options.out_channels(), 1, 1, 1,
               count_trainable_parameters(*last)});
  return r;
}

std::string radius_label(double eps) {
  char b[32];
  std::snprintf(b, sizeof b, "%g/255", eps * 255);
  return b;
}

torch::Tensor certificates(const torch::Tensor& logits, double input_lipschitz) {
  GSOFT_CHECK(logits.dim() == 2 && logits.size(1) >= 2, "certificates: expected logits (batch, classes >= 2), got ",
              format_shape(logits.sizes()));
  GSOFT_CHECK(input_lipschitz > 0, "certificates: the input Lipschitz constant must be positive, got ", input_lipschitz);
  const torch::Tensor top2 = std::get<0>(logits.topk(2, 1));
  return (top2.select(1, 0) - top2.select(1, 1)) / (std::sqrt(2.0) * input_lipschitz);
}

void CertificateMeter::add(const torch::Tensor& logits, const torch::Tensor& labels) {
  GSOFT_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0), "certificates: expected ", logits.size(0),
              " labels, got ", format_shape(labels.sizes()));
  const torch::Tensor cert = certificates(logits.detach().to(torch::kDouble), lipschitz_);
  const torch::Tensor correct = logits.argmax(1).eq(labels);
  if (robust_.empty()) robust_.assign(eps_.size(), 0);
  for (size_t i = 0; i < eps_.size(); ++i) robust_[i] += correct.logical_and(cert.gt(eps_[i])).sum().item<int64_t>();
  correct_ += correct.sum().item<int64_t>();
  cert_sum_ += cert.masked_select(correct).sum().item<double>();
  count_ += labels.size(0);
}

CertifiedAccuracy CertificateMeter::result() const {
  CertifiedAccuracy r;
  r.count = count_;
  r.eps = eps_;
  const double n = static_cast<double>(std::max<int64_t>(count_, 1));
  r.accuracy = static_cast<double>(correct_) / n;
  for (size_t i = 0; i < eps_.size(); ++i) r.robust_accuracy.push_back(robust_.empty() ? 0.0 : static_cast<double>(robust_[i]) / n);
  r.mean_certificate = correct_ ? cert_sum_ / static_cast<double>(correct_) : 0.0;
  return r;
}

}  // namespace gsoft::conv
