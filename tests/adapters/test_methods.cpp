// Shared adapter tests, run for every row of method_cases().
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "adapters/method_cases.h"
#include "gsoft/adapters/adaptable_conv2d.h"
#include "gsoft/adapters/adapter.h"
#include "gsoft/adapters/adaptable_linear.h"
#include "gsoft/adapters/inject.h"
#include "gsoft/gs/functional.h"
#include "gsoft/ortho/block_maps.h"
#include "support/helpers.h"

using namespace gsoft;
using gsoft::test::kIn;
using gsoft::test::kOut;
using gsoft::test::max_abs_diff;
using gsoft::test::error_of;
using gsoft::test::MethodCase;

namespace {

struct Net : torch::nn::Module {
  Net() { layer = register_module("layer", AdaptableLinear(kIn, kOut)); }
  AdaptableLinear layer{nullptr};
};

double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return max_abs_diff(a, b) / std::max(1e-12, b.abs().max().item<double>());
}

}  // namespace

class AdapterMethod : public ::testing::TestWithParam<MethodCase> {};

TEST_P(AdapterMethod, IdentityAtInitialisation) {
  Net net;
  auto x = torch::randn({7, kIn});
  auto before = net.layer(x);
  inject_adapters(net, GetParam().config);
  EXPECT_LT(max_abs_diff(net.layer(x), before), 1e-6);
}

TEST_P(AdapterMethod, ReportsTrainableParameters) {
  Net net;
  auto report = inject_adapters(net, GetParam().config);
  ASSERT_EQ(report.adapted.size(), 1u);
  EXPECT_EQ(report.adapted[0].name, "layer");
  EXPECT_EQ(report.adapter_params, GetParam().expected_params);
  EXPECT_EQ(report.trainable_params, GetParam().expected_params);
  EXPECT_EQ(report.total_params, kIn * kOut + kOut + GetParam().expected_params);
}

TEST_P(AdapterMethod, MergeMatchesAdaptedForwardAndUnmergeRestores) {
  Net net;
  auto cfg = GetParam().config;
  cfg.init_weights = false;  // a random, non-identity adapter
  inject_adapters(net, cfg);
  auto x = torch::randn({9, kIn});
  auto w0 = net.layer->weight.detach().clone();
  auto adapted = net.layer(x).detach();
  net.layer->merge();
  EXPECT_TRUE(net.layer->merged());
  EXPECT_LT(rel_diff(net.layer(x).detach(), adapted), 1e-5);
  auto w1 = net.layer->weight.detach().clone();
  net.layer->merge();  // idempotent
  EXPECT_TRUE(torch::equal(net.layer->weight.detach(), w1));
  net.layer->unmerge();
  EXPECT_FALSE(net.layer->merged());
  EXPECT_LT(max_abs_diff(net.layer->weight.detach(), w0), 1e-5);
  EXPECT_LT(rel_diff(net.layer(x).detach(), adapted), 1e-5);
}

TEST_P(AdapterMethod, OnlyAdapterParametersGetGradients) {
  Net net;
  auto cfg = GetParam().config;
  cfg.init_weights = false;
  inject_adapters(net, cfg);
  net.layer(torch::randn({5, kIn})).pow(2).sum().backward();
  EXPECT_FALSE(net.layer->weight.grad().defined());
  EXPECT_FALSE(net.layer->bias.grad().defined());
  int64_t with_grad = 0;
  for (const auto& [name, t] : net.layer->adapter()->named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0) << name;
    ++with_grad;
  }
  EXPECT_GT(with_grad, 0);
  // Parameter names carry the method prefix and appear in the module's state.
  const auto prefix = parameter_prefix(cfg.method);
  for (const auto& item : net.named_parameters())
    if (item.key() != "layer.weight" && item.key() != "layer.bias")
      EXPECT_EQ(item.key().rfind("layer." + prefix, 0), 0u) << item.key();
}

TEST_P(AdapterMethod, DisabledAdapterIsTheBaseLayer) {
  Net net;
  auto x = torch::randn({4, kIn});
  auto base = net.layer(x).detach();
  auto cfg = GetParam().config;
  cfg.init_weights = false;
  inject_adapters(net, cfg);
  EXPECT_GT(max_abs_diff(net.layer(x), base), 1e-4);
  net.layer->set_adapter_enabled(false);
  EXPECT_TRUE(torch::equal(net.layer(x).detach(), base));
}

TEST_P(AdapterMethod, SafeMergeRefusesNonFiniteAndLeavesWeight) {
  Net net;
  inject_adapters(net, GetParam().config);
  auto w0 = net.layer->weight.detach().clone();
  {
    torch::NoGradGuard g;
    net.layer->adapter()->named_parameters().front().second.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  EXPECT_THROW(net.layer->merge(true), std::invalid_argument);
  EXPECT_FALSE(net.layer->merged());
  EXPECT_TRUE(torch::equal(net.layer->weight.detach(), w0));
}

TEST_P(AdapterMethod, SetParameterMakesTheGivenTensorTheOneThatIsTrained) {
  auto cfg = GetParam().config;
  if (cfg.method == Method::Full) GTEST_SKIP() << "full fine-tuning has no adapter";
  cfg.init_weights = false;
  auto adapter = make_linear_adapter(cfg, kIn, kOut, "layer");
  auto weight = torch::randn({kOut, kIn});
  auto x = torch::randn({5, kIn});
  // Replace every tensor by an independent copy (as a Python nn.Parameter would be).
  std::vector<torch::Tensor> owned;
  for (const auto& [name, t] : adapter->named_parameters()) {
    owned.push_back(t.detach().clone().requires_grad_(true));
    adapter->set_parameter(name, owned.back());
  }
  adapter->forward(x, weight, {}, true).sum().backward();
  const auto now = adapter->named_parameters();
  for (size_t i = 0; i < owned.size(); ++i) {
    EXPECT_TRUE(now[i].second.is_same(owned[i])) << now[i].first;
    ASSERT_TRUE(owned[i].grad().defined()) << now[i].first;
  }
  // A changed value changes the output: forward reads the new tensors.
  auto before = adapter->forward(x, weight, {}, false).detach();
  {
    torch::NoGradGuard g;
    owned.front().add_(torch::randn_like(owned.front()));  // not a constant: the skew part of a block ignores one
  }
  EXPECT_GT(max_abs_diff(adapter->forward(x, weight, {}, false), before), 1e-4);
  const auto name = now.front().first;
  EXPECT_HAS(error_of([&] { adapter->set_parameter(name, torch::zeros({3})); }), "expected shape");
  EXPECT_HAS(error_of([&] { adapter->set_parameter("no_such", owned.front()); }), "has no tensor 'no_such'; it has: " + name);
}

INSTANTIATE_TEST_SUITE_P(Cases, AdapterMethod, ::testing::ValuesIn(gsoft::test::method_cases()),
                         [](const auto& info) { return info.param.name; });

// PEFT's OFT forward, written out: x rotated blockwise by R (einsum "...rk,rkc->...rc"), with
// Q = U - U^T from the upper-triangle vector and R exact or Neumann.
TEST(OFTAdapter, MatchesPEFTFormulas) {
  for (bool neumann : {false, true}) {
    auto cfg = gsoft::test::make_config(Method::OFT);
    cfg.block_size = 8;
    cfg.init_weights = false;
    cfg.use_cayley_neumann = neumann;
    AdaptableLinear layer(kIn, kOut);
    layer->attach(make_linear_adapter(cfg, kIn, kOut));
    auto vec = layer->adapter()->named_parameters()[0].second.detach();
    const int64_t r = kIn / 8, b = 8;
    auto idx = torch::triu_indices(b, b, 1);
    auto U = torch::zeros({r, b, b});
    U.index_put_({torch::indexing::Slice(), idx[0], idx[1]}, vec);
    auto Q = U - U.transpose(1, 2);
    auto I = torch::eye(b).expand({r, b, b});
    torch::Tensor R;
    if (neumann) {
      auto Q2 = Q.matmul(Q), Q3 = Q2.matmul(Q), Q4 = Q3.matmul(Q);
      R = I + 2 * Q + 2 * Q2 + 2 * Q3 + Q4;
    } else {
      R = torch::matmul(I - Q, torch::inverse(I + Q));
    }
    auto x = torch::randn({6, kIn});
    auto xr = torch::einsum("nrk,rkc->nrc", {x.view({6, r, b}), R}).reshape({6, kIn});
    auto expect = torch::nn::functional::linear(xr, layer->weight, layer->bias);
    EXPECT_LT(max_abs_diff(layer(x), expect), 1e-5) << "neumann=" << neumann;
  }
}

// GSOFT's scale keeps the layer's output for the backward and recovers s's input from it (Double
// GSOFT also Q_out's input, as Q_out^T of it); the gradients equal those of linear(x, W') with the
// differentiable adapted weight (float64), with and without bias, with an |s| below the recovery
// threshold and with the non-orthogonal free map (both the plain path). 15 rows take the paths that
// apply the chains to the batch, 33 rows (at least twice W's larger side, 16) the merged weight's
// (gs_linear), for GSOFT and Double GSOFT.
TEST(GSOFTAdapter, ScaleRecoveredFromTheOutputGivesTheSameGradients) {
  // 15 rows: GSOFT's scale on the product's rows (fewer rows than W's 16 columns); 18: folded into
  // W; 33: the merged weight (at least twice W's rows).
  for (int64_t batch : {5, 6, 11})
  for (Method method : {Method::GSOFT, Method::DoubleGSOFT})
  for (Parametrization map : {Parametrization::Cayley, Parametrization::Free})
  for (bool with_bias : {true, false})
    for (double tiny : {0.0, 1e-5}) {
      AdapterConfig c;
      c.method = method;
      c.parametrization = map;
      c.block_size = 4;
      c.target_modules = {"layer"};
      c.init_weights = false;
      auto a = make_linear_adapter(c, 16, 12);
      std::vector<torch::Tensor> params;
      for (const auto& [name, t] : a->named_parameters()) {
        auto d = t.detach().to(torch::kFloat64);
        if (name == "gsoft_s" && tiny > 0) d[3] = tiny;
        d.requires_grad_(true);
        a->set_parameter(name, d);
        params.push_back(d);
      }
      const auto x = torch::randn({batch, 3, 16}, torch::kFloat64).requires_grad_(true);
      const auto W = torch::randn({12, 16}, torch::kFloat64);
      const auto b = with_bias ? (10 * torch::randn({12}, torch::kFloat64)).requires_grad_(true) : torch::Tensor();
      const auto G = torch::randn({batch, 3, 12}, torch::kFloat64);
      std::vector<torch::Tensor> inputs{x};
      inputs.insert(inputs.end(), params.begin(), params.end());
      if (with_bias) inputs.push_back(b);
      const auto out = a->forward(x, W, b, true);
      const auto ref = torch::nn::functional::linear(x, a->adapted_weight(W, true), b);
      EXPECT_LT(max_abs_diff(out, ref), 1e-10);
      const auto g = torch::autograd::grad({(out * G).sum()}, inputs);
      const auto gr = torch::autograd::grad({(ref * G).sum()}, inputs);
      for (size_t i = 0; i < g.size(); ++i)
        EXPECT_LT(rel_diff(g[i], gr[i]), 1e-9) << to_string(method) << " " << to_string(map) << " input " << i
                                                << " bias " << with_bias << " tiny " << tiny << " rows " << 3 * batch;
    }
}

TEST(LoRAAdapter, MatchesFormula) {
  auto cfg = gsoft::test::make_config(Method::LoRA);
  cfg.r = 4;
  cfg.lora_alpha = 16;
  cfg.init_weights = false;
  AdaptableLinear layer(kIn, kOut);
  layer->attach(make_linear_adapter(cfg, kIn, kOut));
  auto p = layer->adapter()->named_parameters();
  auto x = torch::randn({3, kIn});
  auto expect = torch::nn::functional::linear(x, layer->weight, layer->bias) + 4.0 * x.matmul(p[0].second.t()).matmul(p[1].second.t());
  EXPECT_LT(max_abs_diff(layer(x), expect), 1e-5);
}

TEST(AdapterConfig, ValidationNamesFieldAndValues) {
  auto cfg = gsoft::test::make_config(Method::GSOFT);
  try {
    cfg.validate();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("exactly one of block_size and nblocks"), std::string::npos) << e.what();
  }
  cfg.block_size = 5;
  AdaptableLinear layer(kIn, kOut);
  try {
    make_linear_adapter(cfg, kIn, kOut, "encoder.query");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'encoder.query' in features (32) must be divisible by block_size (5)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(method_from_string("gsfot"), std::invalid_argument);
  auto full = gsoft::test::make_config(Method::Full);
  EXPECT_THROW(make_linear_adapter(full, kIn, kOut), std::invalid_argument);
}

TEST(AdaptableLinear, IsADropInLinear) {
  torch::manual_seed(3);
  torch::nn::Linear ref(torch::nn::LinearOptions(5, 3));
  torch::manual_seed(3);
  AdaptableLinear a(5, 3);
  EXPECT_TRUE(torch::equal(ref->weight, a->weight));
  EXPECT_TRUE(torch::equal(ref->bias, a->bias));
  auto x = torch::randn({2, 5});
  EXPECT_TRUE(torch::equal(ref(x), a(x)));
  std::ostringstream os;
  a->pretty_print(os);
  EXPECT_EQ(os.str(), "gsoft::AdaptableLinear(in_features=5, out_features=3, bias=true)");
  AdaptableLinear nb(torch::nn::LinearOptions(5, 3).bias(false));
  EXPECT_FALSE(nb->bias.defined());
}

// ---------------------------------------------------------------- Conv2d
// The same table on a convolution whose weight is 48 x (4 * 2 * 4) = 48 x 32: non-square kernel,
// stride, padding and dilation all different per axis.
namespace {

torch::nn::Conv2dOptions conv_options() {
  return torch::nn::Conv2dOptions(4, kOut, {2, 4}).stride({2, 1}).padding({1, 2}).dilation({1, 2});
}

struct ConvNet : torch::nn::Module {
  ConvNet() { layer = register_module("layer", AdaptableConv2d(conv_options())); }
  AdaptableConv2d layer{nullptr};
};

// The base convolution, computed with the layer's own weights by libtorch.
torch::Tensor F_conv(ConvNet& net, const torch::Tensor& x) {
  const auto o = conv_options();
  return torch::conv2d(x, net.layer->weight, net.layer->bias, {2, 1}, {1, 2}, {1, 2});
}

}  // namespace

class AdapterMethodConv : public ::testing::TestWithParam<MethodCase> {};

TEST_P(AdapterMethodConv, IdentityAtInitialisationForAnyInputSize) {
  ConvNet net;
  auto report = inject_adapters(net, GetParam().config);
  EXPECT_EQ(report.adapter_params, GetParam().expected_params);
  for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{2, 7}, {5, 5}, {9, 13}}) {
    auto x = torch::randn({2, 4, hw.first, hw.second});
    auto base = F_conv(net, x);
    EXPECT_LT(max_abs_diff(net.layer(x), base), 1e-5) << hw.first << "x" << hw.second;
  }
}

TEST_P(AdapterMethodConv, MergedConvEqualsAdaptedConv) {
  ConvNet net;
  auto cfg = GetParam().config;
  cfg.init_weights = false;
  inject_adapters(net, cfg);
  auto x = torch::randn({3, 4, 6, 11});
  auto adapted = net.layer(x).detach();
  auto w0 = net.layer->weight.detach().clone();
  net.layer->merge();
  EXPECT_LT(rel_diff(net.layer(x).detach(), adapted), 1e-5);
  net.layer->unmerge();
  EXPECT_LT(max_abs_diff(net.layer->weight.detach(), w0), 1e-5);
  // Gradients reach the adapter through the adapted weight.
  net.layer(x).sum().backward();
  for (const auto& [name, t] : net.layer->adapter()->named_parameters()) EXPECT_TRUE(t.grad().defined()) << name;
  EXPECT_FALSE(net.layer->weight.grad().defined());
}

// The convolution trains through the adapted weight W'; the definition runs the adapter on every
// patch row. Both give the same output and the same adapter gradients (float64).
TEST_P(AdapterMethodConv, AdaptedWeightPathEqualsAdapterOnPatches) {
  ConvNet net;
  auto cfg = GetParam().config;
  cfg.init_weights = false;
  inject_adapters(net, cfg);
  net.to(torch::kFloat64);
  const auto x = torch::randn({3, 4, 6, 11}, torch::kFloat64);
  const auto target = torch::randn_like(net.layer(x));
  auto grads = [&](const torch::Tensor& y) {
    for (const auto& [name, t] : net.layer->adapter()->named_parameters()) t.mutable_grad() = torch::Tensor();
    (y * target).sum().backward();
    std::vector<torch::Tensor> g;
    for (const auto& [name, t] : net.layer->adapter()->named_parameters()) g.push_back(t.grad().clone());
    return g;
  };
  const auto y = net.layer(x);
  const auto g = grads(y);
  namespace F = torch::nn::functional;
  const auto patches = F::unfold(x, F::UnfoldFuncOptions({2, 4}).dilation({1, 2}).padding({1, 2}).stride({2, 1}));
  const auto rows = net.layer->adapter()->forward(patches.transpose(1, 2), net.layer->weight.view({kOut, -1}),
                                                  net.layer->bias, /*training=*/true);
  const auto ref = rows.transpose(1, 2).reshape(y.sizes());
  EXPECT_LT(rel_diff(y.detach(), ref.detach()), 1e-12);
  const auto gref = grads(ref);
  ASSERT_EQ(g.size(), gref.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_LT(rel_diff(g[i], gref[i]), 1e-10) << i;
}

INSTANTIATE_TEST_SUITE_P(Cases, AdapterMethodConv, ::testing::ValuesIn(gsoft::test::method_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(AdaptableConv2d, IsADropInConv2dAndRefusesGroupedAdapters) {
  torch::manual_seed(5);
  torch::nn::Conv2d ref(conv_options());
  torch::manual_seed(5);
  AdaptableConv2d a(conv_options());
  EXPECT_TRUE(torch::equal(ref->weight, a->weight));
  EXPECT_TRUE(torch::equal(ref->bias, a->bias));
  auto x = torch::randn({1, 4, 7, 9});
  EXPECT_TRUE(torch::allclose(ref(x), a(x)));
  AdaptableConv2d grouped(torch::nn::Conv2dOptions(4, 8, 3).groups(2));
  EXPECT_TRUE(torch::allclose(grouped(torch::zeros({1, 4, 5, 5})), grouped->bias.view({1, 8, 1, 1}).expand({1, 8, 3, 3})));
  auto cfg = gsoft::test::make_config(Method::LoRA);
  try {
    grouped->attach(make_linear_adapter(cfg, 18, 8));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("grouped convolutions (groups=2) are not supported"), std::string::npos) << e.what();
  }
  AdaptableConv2d same(torch::nn::Conv2dOptions(4, 8, 3).padding(torch::kSame));
  EXPECT_THROW(same->attach(make_linear_adapter(cfg, 36, 8)), std::invalid_argument);
}
