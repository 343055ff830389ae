#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gsoft/ortho/block_maps.h"
#include "support/helpers.h"

using namespace gsoft;
using gsoft::test::max_abs_diff;

TEST(BlockMaps, CayleyMatchesFormulaAndIsOrthogonal) {
  auto A = torch::randn({5, 6, 6}, torch::kFloat64);
  auto S = 0.5 * (A - A.transpose(1, 2));
  auto I = torch::eye(6, torch::kFloat64);
  auto expect = torch::matmul(I + S, torch::inverse(I - S));
  auto C = functional::cayley(A);
  EXPECT_LT(max_abs_diff(C, expect), 1e-12);
  EXPECT_LT(functional::orthogonality_error(C), 1e-12);
  EXPECT_TRUE(torch::equal(functional::skew(A), S));
}

// The CPU Cayley map has its own batched LU and backward; the reference is (I + S)(I - S)^-1 by
// libtorch's inverse with autograd's gradient, in float64, for block sizes 1 to 128 and a
// (2, 3, b, b) batch; sizes that are not whole vectors (8 doubles, 16 floats) take the tails.
TEST(BlockMaps, CayleyKernelMatchesTheInverseFormulaInValueAndGradient) {
  for (int64_t b : {1, 2, 3, 7, 16, 24, 33, 40, 56, 64, 128}) {
    const std::vector<int64_t> shape = b == 7 ? std::vector<int64_t>{2, 3, b, b} : std::vector<int64_t>{3, b, b};
    auto A = (2.0 / std::sqrt(static_cast<double>(b)) * torch::randn(shape, torch::kFloat64)).requires_grad_(true);
    auto Aref = A.detach().clone().requires_grad_(true);
    const auto I = torch::eye(b, torch::kFloat64);
    const auto S = 0.5 * (Aref - Aref.transpose(-1, -2));
    const auto expect = torch::matmul(I + S, torch::inverse(I - S));
    const auto C = functional::cayley(A);
    EXPECT_LT(max_abs_diff(C, expect), 1e-11) << "b=" << b;
    EXPECT_LT(functional::orthogonality_error(C.reshape({-1, b, b})), 1e-11) << "b=" << b;
    const auto G = torch::randn(shape, torch::kFloat64);
    (C * G).sum().backward();
    (expect * G).sum().backward();
    EXPECT_LT(max_abs_diff(A.grad(), Aref.grad()), 1e-10 * std::max(1.0, Aref.grad().abs().max().item<double>()))
        << "b=" << b;
    // float32 follows float64 to single precision.
    const auto Af = A.detach().to(torch::kFloat32).requires_grad_(true);
    const auto Cf = functional::cayley(Af);
    EXPECT_LT(max_abs_diff(Cf.to(torch::kFloat64), C.detach()), 2e-5) << "b=" << b;
    (Cf * G.to(torch::kFloat32)).sum().backward();
    EXPECT_LT(max_abs_diff(Af.grad().to(torch::kFloat64), A.grad()), 1e-4 * std::max(1.0, A.grad().abs().max().item<double>()))
        << "b=" << b;
  }
  // Central finite differences in float64, every entry of a (2, 5, 5) batch.
  auto A = torch::randn({2, 5, 5}, torch::kFloat64).requires_grad_(true);
  const auto G = torch::randn({2, 5, 5}, torch::kFloat64);
  (functional::cayley(A) * G).sum().backward();
  auto flat = A.detach().clone().view(-1);
  const double h = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    auto p = flat.clone(), m = flat.clone();
    p[i] += h;
    m[i] -= h;
    const double fd = ((functional::cayley(p.view({2, 5, 5})) * G).sum().item<double>() -
                       (functional::cayley(m.view({2, 5, 5})) * G).sum().item<double>()) / (2 * h);
    EXPECT_NEAR(A.grad().view(-1)[i].item<double>(), fd, 1e-7) << i;
  }
}

TEST(BlockMaps, ExpIsOrthogonalAndMatchesSeries) {
  auto A = 0.3 * torch::randn({4, 5, 5}, torch::kFloat64);
  auto S = functional::skew(A);
  auto series = torch::eye(5, torch::kFloat64).expand_as(S).clone();
  auto term = series.clone();
  for (int k = 1; k < 30; ++k) {
    term = torch::matmul(term, S) / k;
    series = series + term;
  }
  auto E = functional::block_exp(A);
  EXPECT_LT(max_abs_diff(E, series), 1e-12);
  EXPECT_LT(functional::orthogonality_error(E), 1e-12);
}

// PEFT's Cayley-Neumann series: I + 2S + 2S^2 + 2S^3 + S^4 for 5 terms, approaching cayley().
TEST(BlockMaps, CayleyNeumannSeriesAndOrientation) {
  // Its own seed: the series converges as fast as S's spectral radius allows, and a draw that
  // depends on the tests run before it once left 1.5e-5 after 20 terms.
  torch::manual_seed(7);
  auto A = 0.2 * torch::randn({3, 4, 4}, torch::kFloat64);
  auto S = functional::skew(A);
  auto I = torch::eye(4, torch::kFloat64);
  auto S2 = S.matmul(S), S3 = S2.matmul(S), S4 = S3.matmul(S);
  EXPECT_LT(max_abs_diff(functional::cayley_neumann(A, 5), I + 2 * S + 2 * S2 + 2 * S3 + S4), 1e-14);
  EXPECT_LT(max_abs_diff(functional::cayley_neumann(A, 2), I + S), 1e-14);
  const auto C = functional::cayley(A);
  const double e5 = max_abs_diff(functional::cayley_neumann(A, 5), C);
  const double e20 = max_abs_diff(functional::cayley_neumann(A, 20), C);
  EXPECT_LT(e20, 1e-6);
  EXPECT_LT(e20, e5);
  // The other orientation, (I - S)(I + S)^-1 = C^T, is far from the series.
  EXPECT_GT(max_abs_diff(functional::cayley_neumann(A, 20), C.transpose(1, 2)), 1e-2);
  EXPECT_THROW(functional::cayley_neumann(A, 1), std::invalid_argument);
}

TEST(BlockMaps, ZeroParametersGiveIdentity) {
  auto Z = torch::zeros({3, 7, 7});
  auto I = torch::eye(7).expand({3, 7, 7});
  for (auto p : {Parametrization::Cayley, Parametrization::Exp, Parametrization::CayleyNeumann})
    EXPECT_LT(max_abs_diff(functional::orthogonal_blocks(Z, p), I), 1e-12) << to_string(p);
}

TEST(BlockMaps, FiniteDifferenceGradients) {
  auto A = 0.4 * torch::randn({2, 4, 4}, torch::kFloat64);
  auto W = torch::randn({2, 4, 4}, torch::kFloat64);
  for (auto p : {Parametrization::Cayley, Parametrization::Exp, Parametrization::CayleyNeumann}) {
    gsoft::test::expect_gradients_match_fd(
        [&](const std::vector<torch::Tensor>& in) { return (functional::orthogonal_blocks(in[0], p, 7) * W).sum(); }, {A});
    if (HasFatalFailure()) {
      ADD_FAILURE() << to_string(p);
      return;
    }
  }
}

TEST(BlockMaps, NamesRoundTripAndErrorsListChoices) {
  for (auto p : {Parametrization::Cayley, Parametrization::Exp, Parametrization::CayleyNeumann, Parametrization::Free})
    EXPECT_EQ(parametrization_from_string(to_string(p)), p);
  try {
    parametrization_from_string("caley");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'caley'; expected one of: cayley, exp, cayley_neumann, free"), std::string::npos);
  }
  try {
    functional::cayley(torch::zeros({2, 3, 4}));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("got shape [2, 3, 4]"), std::string::npos) << e.what();
  }
}
