// Orthogonal convolutions: SOC and GS-SOC are 1-Lipschitz (largest Jacobian singular value by
// power iteration) and orthogonal where the channels allow; the shuffles are the documented
// permutations; MaxMin variants preserve norms; LipConvNet's parameter counts are the paper's
// Table 3; certificates are margin / (sqrt(2) L).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "gsoft/conv/lipconvnet.h"
#include "gsoft/conv/soc.h"

namespace {

using namespace gsoft;
using namespace gsoft::conv;

// Largest singular value of the linear map x -> f(x) - f(0) (every layer here is affine), by
// power iteration on J^T J with autograd for J^T.
double jacobian_norm(const std::function<torch::Tensor(const torch::Tensor&)>& f, std::vector<int64_t> shape,
                     int iterations = 60) {
  torch::Tensor v = torch::randn(shape, torch::kDouble);
  v /= v.norm();
  const torch::Tensor f0 = f(torch::zeros(shape, torch::kDouble)).detach();
  double sigma = 0;
  for (int i = 0; i < iterations; ++i) {
    torch::Tensor x = v.clone().requires_grad_(true);
    const torch::Tensor jv = f(x) - f0;
    sigma = jv.norm().item<double>();
    const torch::Tensor jtjv = torch::autograd::grad({jv}, {x}, {jv.detach()})[0];
    v = jtjv / jtjv.norm();
  }
  return sigma;
}

template <typename M>
M to_double_eval(M m) {
  m->to(torch::kDouble);
  m->eval();
  return m;
}

struct SocCase {
  const char* name;
  int64_t in, out, kernel, stride, groups;
  bool orthogonal;  // in * stride^2 == out
};

class SocLayers : public ::testing::TestWithParam<SocCase> {};

TEST_P(SocLayers, JacobianNormAtMostOneAndOrthogonalWhenSquare) {
  const SocCase c = GetParam();
  torch::manual_seed(1);
  SOC soc = to_double_eval(SOC(SOCOptions(c.in, c.out).kernel_size(c.kernel).stride(c.stride).groups(c.groups)));
  const std::vector<int64_t> shape{2, c.in, 8, 8};
  auto f = [&](const torch::Tensor& x) { return soc->forward(x); };
  const double s = jacobian_norm(f, shape);
  EXPECT_LE(s, 1 + 1e-3);
  EXPECT_GT(s, 0.9);
  const torch::Tensor x = torch::randn(shape, torch::kDouble);
  const double ratio = ((f(x) - soc->bias.view({1, -1, 1, 1})).norm() / x.norm()).item<double>();
  if (c.orthogonal) EXPECT_NEAR(ratio, 1.0, 1e-3);
  else EXPECT_LE(ratio, 1 + 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Shapes, SocLayers,
                         ::testing::Values(SocCase{"square3x3", 16, 16, 3, 1, 1, true},
                                           SocCase{"square1x1", 16, 16, 1, 1, 1, true},
                                           SocCase{"grouped", 16, 16, 3, 1, 4, true},
                                           SocCase{"pad_in_lt_out", 3, 16, 3, 1, 4, false},
                                           SocCase{"stride2_truncate", 16, 32, 3, 2, 2, false},
                                           SocCase{"stride2_square", 8, 32, 3, 2, 1, true},
                                           SocCase{"truncate_to_classes", 32, 10, 1, 1, 1, false}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(SOC, KernelIsSkewSoTheConvolutionIsAntiSymmetric) {
  torch::manual_seed(2);
  SOC soc = to_double_eval(SOC(SOCOptions(8, 8).groups(2)));
  const torch::Tensor k = soc->skew_kernel().reshape({8, 4, 3, 3});
  const torch::Tensor x = torch::randn({1, 8, 6, 6}, torch::kDouble), y = torch::randn({1, 8, 6, 6}, torch::kDouble);
  const double xly = (x * torch::conv2d(y, k, {}, 1, 1, 1, 2)).sum().item<double>();
  const double lxy = (torch::conv2d(x, k, {}, 1, 1, 1, 2) * y).sum().item<double>();
  EXPECT_NEAR(xly, -lxy, 1e-10);
  EXPECT_GT(std::abs(xly), 1e-3);
}

TEST(SOC, TrainingRefinesSigmaAndCountsSteps) {
  torch::manual_seed(3);
  SOC soc(SOCOptions(8, 8).init_iters(2).update_freq(3));
  soc->train();
  const torch::Tensor x = torch::randn({1, 8, 4, 4});
  for (int i = 0; i < 4; ++i) soc->forward(x);
  EXPECT_EQ(soc->step.item<int64_t>(), 4);
  soc->eval();
  const torch::Tensor u = soc->u1.clone();
  soc->forward(x);
  EXPECT_TRUE(torch::equal(u, soc->u1)) << "evaluation must not iterate";
  EXPECT_EQ(soc->step.item<int64_t>(), 4);
  EXPECT_THROW(SOC(SOCOptions(6, 6).groups(4)), std::exception);
  EXPECT_THROW(soc->forward(torch::randn({1, 7, 4, 4})), std::exception);
}

struct GsCase {
  const char* name;
  int64_t groups1, groups2;
  bool paired;
  ShuffleLayout layout;
  int64_t stride;
};

class GsSocLayers : public ::testing::TestWithParam<GsCase> {};

TEST_P(GsSocLayers, JacobianNormAtMostOneAndOrthogonal) {
  const GsCase c = GetParam();
  torch::manual_seed(4);
  const int64_t in = 16, out = c.stride == 2 ? 64 : 16;
  GSSOC m = to_double_eval(GSSOC(GSSOCOptions(in, out).stride(c.stride).groups1(c.groups1).groups2(c.groups2)
                                     .paired(c.paired).layout(c.layout)));
  const std::vector<int64_t> shape{2, in, 8, 8};
  auto f = [&](const torch::Tensor& x) { return m->forward(x); };
  EXPECT_LE(jacobian_norm(f, shape), 1 + 1e-3);
  const torch::Tensor x = torch::randn(shape, torch::kDouble);
  const torch::Tensor y = f(x) - f(torch::zeros_like(x));
  EXPECT_NEAR((y.norm() / x.norm()).item<double>(), 1.0, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Variants, GsSocLayers,
                         ::testing::Values(GsCase{"g4_none", 4, 0, true, ShuffleLayout::Authors, 1},
                                           GsCase{"g4_1", 4, 1, true, ShuffleLayout::Authors, 1},
                                           GsCase{"g4_2", 4, 2, true, ShuffleLayout::Authors, 1},
                                           GsCase{"g4_4_unpaired_paper", 4, 4, false, ShuffleLayout::Paper, 1},
                                           GsCase{"g4_2_stride2", 4, 2, true, ShuffleLayout::Paper, 2}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ChannelShuffle, AuthorsLayoutIsTheReshapeTransposeAndPaperItsInverse) {
  const int64_t C = 24, G = 3;
  const torch::Tensor x = torch::arange(C, torch::kDouble).view({1, C, 1, 1});
  // The authors' channel_shuffle: view (C/G, G), transpose, flatten; paired: view (C/2G, G, 2).
  const torch::Tensor unpaired = x.view({1, C / G, G, 1, 1}).transpose(1, 2).reshape({1, C, 1, 1});
  const torch::Tensor paired = x.view({1, C / (2 * G), G, 2, 1, 1}).transpose(1, 2).reshape({1, C, 1, 1});
  for (bool p : {false, true}) {
    const Permutation authors = channel_shuffle_permutation(C, G, p, ShuffleLayout::Authors);
    EXPECT_TRUE(torch::equal(shuffle_channels(x, authors), p ? paired : unpaired)) << "paired " << p;
    EXPECT_EQ(channel_shuffle_permutation(C, G, p, ShuffleLayout::Paper), authors.inverse());
  }
  // The paired paper shuffle is P_(G, C/2) acting on channel pairs.
  const Permutation on_pairs = Permutation::perfect_shuffle(G, C / 2);
  const Permutation paper = channel_shuffle_permutation(C, G, true, ShuffleLayout::Paper);
  for (int64_t i = 0; i < C; ++i) EXPECT_EQ(paper[i], 2 * on_pairs[i / 2] + i % 2) << i;
  EXPECT_EQ(channel_shuffle_permutation(C, G, false, ShuffleLayout::Paper), Permutation::perfect_shuffle(G, C));
  EXPECT_THROW(channel_shuffle_permutation(20, 3, false, ShuffleLayout::Paper), std::exception);
  EXPECT_THROW(channel_shuffle_permutation(18, 2, true, ShuffleLayout::Paper), std::exception);
}

TEST(Activations, MaxMinVariantsPairAsDocumentedAndAre1Lipschitz) {
  const torch::Tensor x = torch::tensor({1.0, 5.0, 3.0, 2.0}).view({1, 4, 1, 1});
  // MaxMin pairs c with c + C/2: (1,3), (5,2).
  EXPECT_TRUE(torch::equal(apply_activation(Activation::MaxMin, x).flatten(), torch::tensor({3.0, 5.0, 1.0, 2.0})));
  // MaxMinPermuted pairs neighbours: (1,5), (3,2).
  EXPECT_TRUE(torch::equal(apply_activation(Activation::MaxMinPermuted, x).flatten(), torch::tensor({5.0, 1.0, 3.0, 2.0})));
  torch::manual_seed(5);
  for (Activation a : {Activation::MaxMin, Activation::MaxMinPermuted}) {
    for (int t = 0; t < 20; ++t) {
      const torch::Tensor p = torch::randn({3, 8, 4, 4}, torch::kDouble), q = torch::randn({3, 8, 4, 4}, torch::kDouble);
      EXPECT_NEAR(apply_activation(a, p).norm().item<double>(), p.norm().item<double>(), 1e-12);
      EXPECT_LE((apply_activation(a, p) - apply_activation(a, q)).norm().item<double>(), (p - q).norm().item<double>() + 1e-12);
    }
  }
  EXPECT_THROW(apply_activation(Activation::MaxMin, torch::zeros({1, 3, 1, 1})), std::exception);
  EXPECT_THROW(parse_activation("relu"), std::invalid_argument);
}

TEST(LipConvNet, ParameterCountsMatchThePapersTable3) {
  // LipConvNet-15, CIFAR-100 (Table 3: 24.1M, 6.81M, 8.91M, 7.86M, 7.3M as printed).
  struct Row { ConvKind conv; int64_t g1, g2, params; };
  for (const Row& r : {Row{ConvKind::SOC, 0, 0, 24066020}, Row{ConvKind::GSSOC, 4, 0, 6805988},
                       Row{ConvKind::GSSOC, 4, 1, 8905060}, Row{ConvKind::GSSOC, 4, 2, 7857508},
                       Row{ConvKind::GSSOC, 4, 4, 7333732}}) {
    LipConvNetOptions o;
    o.conv(r.conv).groups1(r.g1 ? r.g1 : 4).groups2(r.g2).num_classes(100).init_iters(0);
    EXPECT_EQ(count_trainable_parameters(*LipConvNet(o)), r.params) << o.describe();
  }
}

TEST(LipConvNet, WholeNetworkIs1LipschitzForAnyInputSizeAndChannels) {
  torch::manual_seed(6);
  for (int64_t size : {32, 64}) {
    LipConvNet net = to_double_eval(LipConvNet(LipConvNetOptions().conv(ConvKind::GSSOC).groups2(2).depth(5)
                                                   .init_channels(8).in_channels(1).input_size(size).num_classes(10)));
    for (int t = 0; t < 3; ++t) {
      const torch::Tensor a = torch::randn({2, 1, size, size}, torch::kDouble);
      const torch::Tensor b = a + 0.1 * torch::randn_like(a);
      const torch::Tensor d = (net->forward(a) - net->forward(b)).norm(2, 1), in = (a - b).flatten(1).norm(2, 1);
      EXPECT_TRUE((d <= in * (1 + 1e-3)).all().item<bool>()) << d << in;
    }
    EXPECT_EQ(net->forward(torch::randn({3, 1, size, size}, torch::kDouble)).sizes(), (std::vector<int64_t>{3, 10}));
  }
  EXPECT_THROW(LipConvNet(LipConvNetOptions().input_size(28)), std::exception);
  EXPECT_THROW(LipConvNet(LipConvNetOptions().depth(7)), std::exception);
}

TEST(Certificates, MarginOverRootTwoTimesL) {
  const torch::Tensor logits = torch::tensor({3.0, 1.0, 0.0, 0.0, 2.0, 1.5, 1.0, 4.0, 0.0}, torch::kDouble).view({3, 3});
  const torch::Tensor labels = torch::tensor({0, 1, 0}, torch::kLong);
  const double L = 1 / 0.25;
  const torch::Tensor c = certificates(logits, L);
  EXPECT_NEAR(c[0].item<double>(), 2.0 / (std::sqrt(2.0) * L), 1e-12);
  EXPECT_NEAR(c[1].item<double>(), 0.5 / (std::sqrt(2.0) * L), 1e-12);
  CertificateMeter meter({0.1, 0.2}, L);
  meter.add(logits, labels);
  const CertifiedAccuracy r = meter.result();
  EXPECT_EQ(r.count, 3);
  EXPECT_NEAR(r.accuracy, 2.0 / 3, 1e-12);
  // certificates 0.354 (correct), 0.088 (correct), 0.530 (wrong)
  EXPECT_NEAR(r.robust_accuracy[0], 1.0 / 3, 1e-12);
  EXPECT_NEAR(r.robust_accuracy[1], 1.0 / 3, 1e-12);
  EXPECT_NEAR(r.mean_certificate, (2.0 + 0.5) / 2 / (std::sqrt(2.0) * L), 1e-12);
}

}  // namespace
