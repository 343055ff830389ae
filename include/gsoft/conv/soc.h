#pragma once
// Skew orthogonal convolutions (SOC, Singla & Feizi 2021) and the paper's GS-SOC (Section 6.3):
// orthogonal convolutions built as the exponential of a skew-symmetric convolution,
//
//   y = exp(L) x + b = x + L x / 1! + L(L x) / 2! + ...,   L = c * (M - ConvTranspose(M)) / (2 sigma),
//
// truncated after `train_terms` (training) or `eval_terms` (evaluation) terms. sigma is the least
// of four power-iteration bounds on the spectral norm of the skew kernel, per group; c is the
// `correction`. GS-SOC groups the channels and shuffles them between grouped layers, as GS
// matrices do with blocks: ChShuffle -> grouped 3x3 SOC [-> ChShuffle -> grouped 1x1 SOC].
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "gsoft/gs/permutation.h"

namespace gsoft::conv {

struct SOCOptions {
  SOCOptions(int64_t in_channels, int64_t out_channels) : in_channels_(in_channels), out_channels_(out_channels) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, kernel_size) = 3;
  TORCH_ARG(int64_t, stride) = 1;  // 1, or 2 through space-to-depth (the input's channels x4)
  TORCH_ARG(int64_t, groups) = 1;
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(int64_t, train_terms) = 5;
  TORCH_ARG(int64_t, eval_terms) = 12;
  TORCH_ARG(int64_t, init_iters) = 50;    // power iterations at construction and every update_freq steps
  TORCH_ARG(int64_t, update_iters) = 1;   // per training step otherwise
  TORCH_ARG(int64_t, update_freq) = 200;
  TORCH_ARG(double, correction) = 0.7;    // 1x1 kernels always use 1.0
};

// The orthogonal layer works on max(in * stride^2, out) channels: the input is zero-padded to
// that many channels and the output truncated to `out_channels`, so the layer is 1-Lipschitz in
// every case and orthogonal when in * stride^2 == out.
class SOCImpl : public torch::nn::Cloneable<SOCImpl> {
 public:
  explicit SOCImpl(const SOCOptions& options);
  SOCImpl(int64_t in_channels, int64_t out_channels) : SOCImpl(SOCOptions(in_channels, out_channels)) {}
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);

  // 0.5 * (M - ConvTranspose(M)), shape (groups, m, m, k, k).
  torch::Tensor skew_kernel() const;
  // The per-group bound on the skew kernel's spectral norm from the stored power-iteration
  // vectors (no iteration), shape (groups).
  torch::Tensor sigma() const;
  void power_iterate(int64_t iterations);
  int64_t channels() const { return channels_; }  // max(in * stride^2, out)

  SOCOptions options;
  torch::Tensor weight, bias;
  torch::Tensor u1, v1, u2, v2, u3, v3, u4, v4;
  torch::Tensor step;  // training forwards so far (decides when to refresh sigma fully)

 private:
  int64_t channels_ = 0;
};
TORCH_MODULE(SOC);

// Channel shuffles for `groups` groups of C channels (C divisible by groups, and by 2 * groups
// when paired), in the gather convention y[:, i] = x[:, sigma(i)]:
//   paper:   unpaired P_(groups, C);  paired sigma(i) = (floor(i/2) mod k) (C/k) + 2 floor(i/2k) + (i mod 2), k = groups
//   authors: the inverse of each (their channel_shuffle: output group g collects every groups-th
//            channel, or channel pair).
// Paired shuffles move channel pairs (2j, 2j+1) together, so MaxMinPermuted pairs stay intact.
enum class ShuffleLayout { Paper, Authors };
Permutation channel_shuffle_permutation(int64_t channels, int64_t groups, bool paired, ShuffleLayout layout);
ShuffleLayout parse_shuffle_layout(const std::string& name);  // "paper" | "authors"

struct GSSOCOptions {
  GSSOCOptions(int64_t in_channels, int64_t out_channels) : in_channels_(in_channels), out_channels_(out_channels) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, kernel_size) = 3;
  TORCH_ARG(int64_t, stride) = 1;
  TORCH_ARG(int64_t, groups1) = 4;  // the grouped kxk SOC
  TORCH_ARG(int64_t, groups2) = 0;  // the grouped 1x1 SOC; 0 means none: "(a, -)"
  TORCH_ARG(bool, paired) = true;
  TORCH_ARG(ShuffleLayout, layout) = ShuffleLayout::Authors;
  TORCH_ARG(int64_t, train_terms) = 5;
  TORCH_ARG(int64_t, eval_terms) = 12;
  TORCH_ARG(int64_t, init_iters) = 50;
};

// (a, -): ChShuffle(a) -> grouped kxk SOC.  (a, b): ... -> ChShuffle(b) -> grouped 1x1 SOC.
// A shuffle is skipped when the channels are not divisible by its group count (e.g. an RGB
// input), as in the authors' code. The second shuffle is applied (the authors' GS_SOC drops it;
// their GS_SOC_Accelerated applies it).
class GSSOCImpl : public torch::nn::Cloneable<GSSOCImpl> {
 public:
  explicit GSSOCImpl(const GSSOCOptions& options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);

  GSSOCOptions options;
  SOC soc1{nullptr}, soc2{nullptr};

 private:
  // Channel indices of the two shuffles (fixed by the options, so built once); undefined when
  // a shuffle is skipped.
  torch::Tensor shuffle1_, shuffle2_;
};
TORCH_MODULE(GSSOC);

// y[:, i] = x[:, sigma(i)] on dimension 1.
torch::Tensor shuffle_channels(const torch::Tensor& x, const Permutation& p);

// MaxMin (Anil et al.): channel c is paired with c + C/2; the first half gets the max, the second
// the min. MaxMinPermuted pairs adjacent channels (2j, 2j+1): max at 2j, min at 2j+1. Both only
// reorder values within pairs, so they preserve norms and are 1-Lipschitz.
enum class Activation { MaxMin, MaxMinPermuted };
Activation parse_activation(const std::string& name);  // "maxmin" | "maxmin-permuted"
torch::Tensor apply_activation(Activation a, const torch::Tensor& x);

}  // namespace gsoft::conv
