// Reference vectors produced by the authors' PyTorch code (tests/data/golden/README.md).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gsoft/gs/functional.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/ortho/block_maps.h"
#include "support/helpers.h"

using namespace gsoft;
using gsoft::test::data_path;
using gsoft::test::max_abs_diff;

namespace {

constexpr double kTol = 1e-5;

const char* kGSFiles[] = {"gs_0_n16_k4_cayley", "gs_1_n24_k4_cayley", "gs_2_n64_k8_cayley",
                          "gs_3_n64_k8_exp", "gs_4_n768_k96_cayley"};

io::SafetensorsFile load(const std::string& name) {
  return io::read_safetensors(data_path("golden/" + name + ".safetensors"));
}

torch::Tensor q_matrix(const torch::Tensor& L, const torch::Tensor& R, Parametrization p, Layout layout) {
  auto chain = gs_orthogonal_chain(L.size(0) * L.size(1), L.size(0), layout);
  return functional::gs_dense(chain, {functional::orthogonal_blocks(R, p), functional::orthogonal_blocks(L, p)});
}

}  // namespace

class GoldenGS : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenGS, OfficialLayoutReproducesOutputsMatrixAndGradients) {
  auto f = load(GetParam());
  auto& t = f.tensors;
  const auto p = parametrization_from_string(f.metadata.at("method"));
  const int64_t k = std::stoll(f.metadata.at("nblocks"));
  const int64_t n = std::stoll(f.metadata.at("n"));
  auto chain = gs_orthogonal_chain(n, k, Layout::Official);
  auto x = t.at("x").clone().requires_grad_(true);
  auto L = t.at("L").clone().requires_grad_(true);
  auto R = t.at("R").clone().requires_grad_(true);
  auto y = functional::gs_apply(chain, x, {functional::orthogonal_blocks(R, p), functional::orthogonal_blocks(L, p)});
  EXPECT_LT(max_abs_diff(y, t.at("y")), kTol);
  auto grads = torch::autograd::grad({y}, {x, L, R}, {t.at("upstream")});
  EXPECT_LT(max_abs_diff(grads[0], t.at("grad_x")), kTol);
  EXPECT_LT(max_abs_diff(grads[1], t.at("grad_L")), kTol);
  EXPECT_LT(max_abs_diff(grads[2], t.at("grad_R")), kTol);
  torch::NoGradGuard g;
  EXPECT_LT(max_abs_diff(q_matrix(t.at("L"), t.at("R"), p, Layout::Official), t.at("Q")), kTol);
}

// The authors' algorithm rewritten with libtorch ops reproduces their own outputs too.
TEST_P(GoldenGS, ReferenceButterflyMultiplyReproducesOutputs) {
  auto f = load(GetParam());
  auto& t = f.tensors;
  const auto p = parametrization_from_string(f.metadata.at("method"));
  auto y = functional::reference_butterfly_multiply(t.at("x"), functional::orthogonal_blocks(t.at("R"), p),
                                                    functional::orthogonal_blocks(t.at("L"), p));
  EXPECT_LT(max_abs_diff(y, t.at("y")), kTol);
}

// The paper's layout is a different matrix unless block size == block count.
TEST_P(GoldenGS, PaperLayoutDiffersUnlessSquareGrid) {
  auto f = load(GetParam());
  auto& t = f.tensors;
  const auto p = parametrization_from_string(f.metadata.at("method"));
  const bool square_grid = f.metadata.at("nblocks") == f.metadata.at("block_size");
  const double d = max_abs_diff(q_matrix(t.at("L"), t.at("R"), p, Layout::Paper), t.at("Q"));
  if (square_grid)
    EXPECT_LT(d, kTol);
  else
    EXPECT_GT(d, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Files, GoldenGS, ::testing::ValuesIn(kGSFiles));

// GSOFT and Double GSOFT linear layers: y = s * (Q_out W Q_in x) + b and the merged weight.
TEST(GoldenLinear, GSOFTAndDoubleGSOFT) {
  for (const char* name : {"gsoft_linear_0_32x32_k4", "double_linear_1_48x48_k6"}) {
    auto f = load(name);
    auto& t = f.tensors;
    const auto p = parametrization_from_string(f.metadata.at("method"));
    auto Q_in = q_matrix(t.at("in_L"), t.at("in_R"), p, Layout::Official);
    auto Q_out = t.count("out_L") ? q_matrix(t.at("out_L"), t.at("out_R"), p, Layout::Official)
                                  : torch::eye(t.at("weight").size(0));
    auto merged = t.at("scale").unsqueeze(1) * Q_out.matmul(t.at("weight")).matmul(Q_in);
    EXPECT_LT(max_abs_diff(merged, t.at("merged_weight")), kTol) << name;
    auto y = torch::nn::functional::linear(t.at("x"), merged, t.at("bias"));
    EXPECT_LT(max_abs_diff(y, t.at("y")), kTol) << name;
  }
}
