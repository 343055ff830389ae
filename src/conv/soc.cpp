#include "gsoft/conv/soc.h"

#include <cmath>

#include "gsoft/core/error.h"

namespace gsoft::conv {
namespace {

// Each group's vector scaled to unit norm (all dimensions but the first).
torch::Tensor normalize(const torch::Tensor& t) {
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < t.dim(); ++d) dims.push_back(d);
  return t / t.square().sum(dims, /*keepdim=*/true).sqrt().clamp_min(1e-12);
}

torch::Tensor space_to_depth(const torch::Tensor& x, int64_t s) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  GSOFT_CHECK(H % s == 0 && W % s == 0, "SOC stride ", s, ": expected height and width divisible by ", s, ", got ",
              H, "x", W);
  // c (h k1) (w k2) -> (c k1 k2) h w
  return x.view({B, C, H / s, s, W / s, s}).permute({0, 1, 3, 5, 2, 4}).reshape({B, C * s * s, H / s, W / s});
}

}  // namespace

SOCImpl::SOCImpl(const SOCOptions& o) : options(o) { reset(); }

void SOCImpl::reset() {
  const auto& o = options;
  GSOFT_CHECK(o.in_channels() > 0 && o.out_channels() > 0, "SOC: channels must be positive, got ", o.in_channels(),
              " -> ", o.out_channels());
  GSOFT_CHECK(o.stride() == 1 || o.stride() == 2, "SOC: stride must be 1 or 2, got ", o.stride());
  GSOFT_CHECK(o.kernel_size() >= 1 && o.kernel_size() % 2 == 1, "SOC: kernel_size must be odd, got ", o.kernel_size());
  GSOFT_CHECK(o.train_terms() >= 1 && o.eval_terms() >= 1, "SOC: terms must be positive, got ", o.train_terms(), " and ",
              o.eval_terms());
  channels_ = std::max(o.in_channels() * o.stride() * o.stride(), o.out_channels());
  GSOFT_CHECK(o.groups() >= 1 && channels_ % o.groups() == 0, "SOC: groups (", o.groups(), ") must divide the ",
              channels_, " channels the layer works on (max(in x stride^2, out))");
  const int64_t G = o.groups(), m = channels_ / G, k = o.kernel_size();
  weight = register_parameter("weight", torch::randn({G, m, m, k, k}) / std::sqrt(static_cast<double>(m)));
  if (o.bias()) {
    const double b = 1.0 / std::sqrt(static_cast<double>(o.out_channels()));
    bias = register_parameter("bias", torch::empty({o.out_channels()}).uniform_(-b, b));
  } else {
    bias = torch::Tensor();
  }
  auto vec = [&](const char* name, std::vector<int64_t> shape) {
    return register_buffer(name, normalize(torch::randn(shape)));
  };
  u1 = vec("u1", {G, 1, m, 1, k});
  u2 = vec("u2", {G, 1, m, k, 1});
  u3 = vec("u3", {G, 1, m, k, k});
  u4 = vec("u4", {G, m, 1, k, k});
  v1 = vec("v1", {G, m, 1, k, 1});
  v2 = vec("v2", {G, m, 1, 1, k});
  v3 = vec("v3", {G, m, 1, 1, 1});
  v4 = vec("v4", {G, 1, m, 1, 1});
  step = register_buffer("step", torch::zeros({1}, torch::kLong));
  power_iterate(o.init_iters());
}

torch::Tensor SOCImpl::skew_kernel() const {
  return 0.5 * (weight - weight.transpose(1, 2).flip({3, 4}));
}

void SOCImpl::power_iterate(int64_t iterations) {
  torch::NoGradGuard g;
  const torch::Tensor f = skew_kernel();
  // The four bounds of "Fantastic Four" (Singla & Feizi): spectral norms of four reshapings of
  // the kernel, each by its own alternating power iteration.
  for (int64_t i = 0; i < iterations; ++i) {
    v1.copy_(normalize((f * u1).sum({2, 4}, true)));
    u1.copy_(normalize((f * v1).sum({1, 3}, true)));
    v2.copy_(normalize((f * u2).sum({2, 3}, true)));
    u2.copy_(normalize((f * v2).sum({1, 4}, true)));
    v3.copy_(normalize((f * u3).sum({2, 3, 4}, true)));
    u3.copy_(normalize((f * v3).sum({1}, true)));
    v4.copy_(normalize((f * u4).sum({1, 3, 4}, true)));
    u4.copy_(normalize((f * v4).sum({2}, true)));
  }
}

torch::Tensor SOCImpl::sigma() const {
  const torch::Tensor f = skew_kernel();
  const std::vector<int64_t> dims{1, 2, 3, 4};
  return torch::min(torch::min((f * u1 * v1).sum(dims), (f * u2 * v2).sum(dims)),
                    torch::min((f * u3 * v3).sum(dims), (f * u4 * v4).sum(dims)));
}

torch::Tensor SOCImpl::forward(const torch::Tensor& input) {
  const auto& o = options;
  GSOFT_CHECK(input.dim() == 4 && input.size(1) == o.in_channels(), "SOC: expected input (batch, ", o.in_channels(),
              ", height, width), got ", format_shape(input.sizes()));
  if (is_training()) {
    const int64_t s = step.item<int64_t>();
    power_iterate(s % o.update_freq() == 0 ? o.init_iters() : o.update_iters());
    step.add_(1);
  }
  const int64_t G = o.groups(), m = channels_ / G, k = o.kernel_size();
  const double correction = k == 1 ? 1.0 : o.correction();
  const torch::Tensor kernel =
      (skew_kernel() * (correction / (sigma() + 1e-12)).view({G, 1, 1, 1, 1})).reshape({G * m, m, k, k});
  torch::Tensor x = o.stride() > 1 ? space_to_depth(input, o.stride()) : input;
  if (x.size(1) < channels_) x = torch::constant_pad_nd(x, {0, 0, 0, 0, 0, channels_ - x.size(1)});
  torch::Tensor z = x, term = x;
  const int64_t terms = is_training() ? o.train_terms() : o.eval_terms();
  const int64_t pad = k / 2;
  for (int64_t i = 1; i <= terms; ++i) {
    term = torch::conv2d(term, kernel, {}, 1, pad, 1, G) / static_cast<double>(i);
    z = z + term;
  }
  if (o.out_channels() < channels_) z = z.narrow(1, 0, o.out_channels());
  if (bias.defined()) z = z + bias.view({1, -1, 1, 1});
  return z;
}

Permutation channel_shuffle_permutation(int64_t channels, int64_t groups, bool paired, ShuffleLayout layout) {
  GSOFT_CHECK(groups >= 1 && channels % (paired ? 2 * groups : groups) == 0, "channel shuffle: ", channels,
              " channels cannot be split into ", groups, paired ? " groups of channel pairs" : " groups");
  Permutation p;
  if (!paired) {
    p = Permutation::perfect_shuffle(groups, channels);
  } else {
    std::vector<int64_t> s(static_cast<size_t>(channels));
    const int64_t k = groups;
    for (int64_t i = 0; i < channels; ++i) s[static_cast<size_t>(i)] = ((i / 2) % k) * (channels / k) + 2 * (i / (2 * k)) + i % 2;
    p = Permutation(std::move(s));
  }
  return layout == ShuffleLayout::Paper ? p : p.inverse();
}

ShuffleLayout parse_shuffle_layout(const std::string& name) {
  if (name == "paper") return ShuffleLayout::Paper;
  if (name == "authors") return ShuffleLayout::Authors;
  throw std::invalid_argument("unknown shuffle layout '" + name + "'; expected paper or authors");
}

torch::Tensor shuffle_channels(const torch::Tensor& x, const Permutation& p) {
  GSOFT_CHECK(x.dim() >= 2 && x.size(1) == p.size(), "channel shuffle of ", p.size(), " channels: got input ",
              format_shape(x.sizes()));
  return x.index_select(1, torch::tensor(p.sigma(), torch::kLong));
}

GSSOCImpl::GSSOCImpl(const GSSOCOptions& o) : options(o) { reset(); }

void GSSOCImpl::reset() {
  const auto& o = options;
  GSOFT_CHECK(o.groups1() >= 1 && o.groups2() >= 0, "GS-SOC: groups must be positive, got (", o.groups1(), ", ",
              o.groups2(), ")");
  soc1 = register_module("soc1", SOC(SOCOptions(o.in_channels(), o.out_channels())
                                         .kernel_size(o.kernel_size())
                                         .stride(o.stride())
                                         .groups(o.groups1())
                                         .train_terms(o.train_terms())
                                         .eval_terms(o.eval_terms())
                                         .init_iters(o.init_iters())));
  auto indices = [&](int64_t channels, int64_t groups) {
    if (groups == 1 || channels % (o.paired() ? 2 * groups : groups) != 0) return torch::Tensor();
    return torch::tensor(channel_shuffle_permutation(channels, groups, o.paired(), o.layout()).sigma(), torch::kLong);
  };
  shuffle1_ = indices(o.in_channels(), o.groups1());
  shuffle2_ = o.groups2() > 0 ? indices(o.out_channels(), o.groups2()) : torch::Tensor();
  if (o.groups2() > 0)
    soc2 = register_module("soc2", SOC(SOCOptions(o.out_channels(), o.out_channels())
                                           .kernel_size(1)
                                           .groups(o.groups2())
                                           .train_terms(o.train_terms())
                                           .eval_terms(o.eval_terms())
                                           .init_iters(o.init_iters())));
}

torch::Tensor GSSOCImpl::forward(const torch::Tensor& input) {
  auto shuffle = [](const torch::Tensor& x, const torch::Tensor& indices) {
    return indices.defined() ? x.index_select(1, indices) : x;
  };
  GSOFT_CHECK(input.dim() == 4 && input.size(1) == options.in_channels(), "GS-SOC: expected input (batch, ",
              options.in_channels(), ", height, width), got ", format_shape(input.sizes()));
  torch::Tensor x = soc1->forward(shuffle(input, shuffle1_));
  if (!soc2) return x;
  return soc2->forward(shuffle(x, shuffle2_));
}

Activation parse_activation(const std::string& name) {
  if (name == "maxmin") return Activation::MaxMin;
  if (name == "maxmin-permuted") return Activation::MaxMinPermuted;
  throw std::invalid_argument("unknown activation '" + name + "'; expected maxmin or maxmin-permuted");
}

torch::Tensor apply_activation(Activation a, const torch::Tensor& x) {
  const int64_t C = x.size(1);
  GSOFT_CHECK(C % 2 == 0, "MaxMin: expected an even channel count, got ", C);
  if (a == Activation::MaxMin) {
    const torch::Tensor lo = x.narrow(1, 0, C / 2), hi = x.narrow(1, C / 2, C / 2);
    return torch::cat({torch::max(lo, hi), torch::min(lo, hi)}, 1);
  }
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape[1] = C / 2;
  shape.insert(shape.begin() + 2, 2);
  const torch::Tensor pairs = x.reshape(shape);  // (B, C/2, 2, ...)
  const torch::Tensor a0 = pairs.select(2, 0), a1 = pairs.select(2, 1);
  return torch::stack({torch::max(a0, a1), torch::min(a0, a1)}, 2).reshape(x.sizes());
}

}  // namespace gsoft::conv
