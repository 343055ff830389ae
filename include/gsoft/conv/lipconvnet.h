#pragma once
// LipConvNet-N (Singla & Feizi; the paper's Section 6.3): a 1-Lipschitz CNN of orthogonal
// convolutions and MaxMin activations, and the certificates its Lipschitz bound gives.
//
// Five levels of N/5 blocks (conv -> activation). The last block of each level has stride 2 and
// doubles the channels (init_channels, 2x, ..., 32x); the last block of level 5 uses a 1x1 kernel.
// A final plain 1x1 SOC maps the (input_size/32)^2 * 32 * init_channels features to the classes.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gsoft/conv/soc.h"

namespace gsoft::conv {

// The largest LipConvNet accepted (LipConvNet-15 with 32 initial channels has 24M parameters).
constexpr int64_t kMaxLipConvNetParams = int64_t{1} << 28;


enum class ConvKind { SOC, GSSOC };
ConvKind parse_conv_kind(const std::string& name);  // "soc" | "gs-soc"
std::string conv_kind_name(ConvKind k);

struct LipConvNetOptions {
  TORCH_ARG(ConvKind, conv) = ConvKind::SOC;
  TORCH_ARG(int64_t, groups1) = 4;   // GS-SOC only
  TORCH_ARG(int64_t, groups2) = 0;   // GS-SOC only; 0 = "(a, -)"
  TORCH_ARG(int64_t, depth) = 15;    // N, a multiple of 5
  TORCH_ARG(int64_t, init_channels) = 32;
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, input_size) = 32;  // a multiple of 32
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(Activation, activation) = Activation::MaxMinPermuted;
  TORCH_ARG(bool, paired) = true;
  TORCH_ARG(ShuffleLayout, layout) = ShuffleLayout::Authors;
  TORCH_ARG(int64_t, train_terms) = 5;
  TORCH_ARG(int64_t, eval_terms) = 12;
  TORCH_ARG(int64_t, init_iters) = 50;  // power iterations at construction (0: e.g. to count parameters)


 public:
  // "soc", "gs-soc (4,-)", "gs-soc (4,1)"
  std::string describe() const;
};

class LipConvNetImpl : public torch::nn::Cloneable<LipConvNetImpl> {
 public:
  explicit LipConvNetImpl(const LipConvNetOptions& options = {});
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);  // (B, in_channels, S, S) -> (B, num_classes)

  struct LayerInfo {
    std::string name, kind;
    int64_t in_channels, out_channels, kernel_size, stride, size_in, params;
  };
  std::vector<LayerInfo> layers() const;

  LipConvNetOptions options;
  torch::nn::ModuleList blocks{nullptr};
  SOC last{nullptr};
};
TORCH_MODULE(LipConvNet);

int64_t count_trainable_parameters(const torch::nn::Module& m);

// certificate = (top-1 logit - top-2 logit) / (sqrt(2) * L), where L is the Lipschitz constant
// of what precedes the network (the input normalisation: 1 / min(std)). A correctly classified
// input whose certificate exceeds eps keeps its label under any perturbation of l2 norm eps.
torch::Tensor certificates(const torch::Tensor& logits, double input_lipschitz);

// "36/255": how a radius is named in logs and reports.
std::string radius_label(double eps);

struct CertifiedAccuracy {
  int64_t count = 0;
  double accuracy = 0;                  // clean
  std::vector<double> eps;              // radii asked for
  std::vector<double> robust_accuracy;  // correct and certificate > eps, per radius
  double mean_certificate = 0;          // over the correctly classified inputs
};

// Accumulates over batches.
class CertificateMeter {
 public:
  CertificateMeter(std::vector<double> eps, double input_lipschitz) : eps_(std::move(eps)), lipschitz_(input_lipschitz) {}
  void add(const torch::Tensor& logits, const torch::Tensor& labels);
  CertifiedAccuracy result() const;

 private:
  std::vector<double> eps_;
  double lipschitz_;
  int64_t count_ = 0, correct_ = 0;
  std::vector<int64_t> robust_;
  double cert_sum_ = 0;
};

}  // namespace gsoft::conv
