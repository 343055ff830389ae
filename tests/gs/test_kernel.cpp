// The fused kernel against the unfused libtorch composition and dense materialisation, plus
// finite-difference gradients in float64.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gsoft/gs/functional.h"
#include "gsoft/gs/gs_orthogonal.h"
#include "gsoft/ortho/block_maps.h"
#include "support/helpers.h"

using namespace gsoft;
using gsoft::test::max_abs_diff;
using gsoft::test::random_blocks;
using gsoft::test::random_permutation;
using gsoft::test::error_of;
using gsoft::test::expect_gradients_match_fd;

namespace {

struct ChainCase {
  const char* name;
  GSChain chain;
};

std::vector<ChainCase> chain_cases() {
  std::vector<ChainCase> cases;
  cases.push_back({"official_12_4", gs_orthogonal_chain(12, 4, Layout::Official)});
  cases.push_back({"paper_12_3", gs_orthogonal_chain(12, 3, Layout::Paper)});
  cases.push_back({"official_768_96", gs_orthogonal_chain(768, 96, Layout::Official)});
  cases.push_back({"rectangular_random_perms",
                   GSChain::gs(random_permutation(6), {3, 2, 4}, random_permutation(12), {4, 3, 5},
                               random_permutation(20))});
  cases.push_back({"rectangular_wide_blocks",
                   GSChain::gs(random_permutation(36), {2, 18, 11}, random_permutation(22), {2, 11, 9},
                               Permutation::identity(18))});
  cases.push_back({"four_factor_shuffle", gs_shuffle_chain(32, 8, 4)});
  cases.push_back({"single_factor", GSChain({random_permutation(10), Permutation::identity(10)}, {{2, 5, 5}})});
  return cases;
}

}  // namespace

TEST(GSKernel, ForwardMatchesUnfusedAndDense) {
  for (auto dt : {torch::kFloat64, torch::kFloat32}) {
    for (const auto& c : chain_cases()) {
      auto blocks = random_blocks(c.chain, dt, 0.5);
      for (int64_t rows : {0, 1, 7, 16, 17, 33, 100}) {
        auto x = torch::randn({rows, c.chain.in_features()}, dt);
        auto y = functional::gs_apply(c.chain, x, blocks);
        ASSERT_EQ(y.sizes(), (std::vector<int64_t>{rows, c.chain.out_features()}));
        if (rows == 0) continue;
        const double tol = dt == torch::kFloat64 ? 1e-12 : 1e-4;
        EXPECT_LT(max_abs_diff(y, functional::gs_apply_unfused(c.chain, x, blocks)), tol) << c.name << " rows=" << rows;
        auto dense = functional::gs_dense(c.chain, blocks);
        EXPECT_LT(max_abs_diff(y, x.matmul(dense.t())), tol) << c.name << " rows=" << rows;
      }
    }
  }
}

TEST(GSKernel, KeepsLeadingBatchDimensions) {
  auto chain = gs_orthogonal_chain(24, 4, Layout::Official);
  auto blocks = random_blocks(chain, torch::kFloat32);
  auto x = torch::randn({2, 3, 5, 24});
  auto y = functional::gs_apply(chain, x, blocks);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::equal(y.reshape({-1, 24}), functional::gs_apply(chain, x.reshape({-1, 24}), blocks)));
  // Non-contiguous input.
  auto xt = torch::randn({24, 9}).t();
  EXPECT_LT(max_abs_diff(functional::gs_apply(chain, xt, blocks), functional::gs_apply(chain, xt.contiguous(), blocks)), 1e-7);
}

TEST(GSKernel, TransposeApplyIsTranspose) {
  for (const auto& c : chain_cases()) {
    auto blocks = random_blocks(c.chain);
    auto x = torch::randn({19, c.chain.out_features()}, torch::kFloat64);
    auto dense = functional::gs_dense(c.chain, blocks);
    EXPECT_LT(max_abs_diff(functional::gs_apply_transpose(c.chain, x, blocks), x.matmul(dense)), 1e-12) << c.name;
  }
}

// Hand-written backward vs autograd through the unfused composition (float64).
TEST(GSKernel, BackwardMatchesAutogradOfUnfused) {
  for (const auto& c : chain_cases()) {
    for (int64_t rows : {1, 17, 70}) {
      auto x = torch::randn({rows, c.chain.in_features()}, torch::kFloat64).requires_grad_(true);
      auto blocks = random_blocks(c.chain);
      for (auto& b : blocks) b.requires_grad_(true);
      auto gy = torch::randn({rows, c.chain.out_features()}, torch::kFloat64);
      std::vector<torch::Tensor> inputs{x};
      inputs.insert(inputs.end(), blocks.begin(), blocks.end());
      auto g1 = torch::autograd::grad({functional::gs_apply(c.chain, x, blocks)}, inputs, {gy});
      auto g2 = torch::autograd::grad({functional::gs_apply_unfused(c.chain, x, blocks)}, inputs, {gy});
      for (size_t i = 0; i < g1.size(); ++i)
        EXPECT_LT(max_abs_diff(g1[i], g2[i]), 1e-10) << c.name << " input " << i << " rows " << rows;
    }
  }
}

// float32 through the vectorised paths: block gradients as outer products (columns a multiple of
// 16), as lane pairs (8 x 8 blocks, the b = 8 chain), as 4 x 4 tiles of dot products (16 x 24
// blocks), as grouped dot products (6 x 3 and 3 x 6 blocks) and with a scalar tail (18 pairs per
// block).
TEST(GSKernel, BackwardFloat32MatchesFloat64Reference) {
  std::vector<GSChain> chains{gs_orthogonal_chain(64, 8, Layout::Official), gs_orthogonal_chain(256, 16, Layout::Official),
                              gs_orthogonal_chain(768, 16, Layout::Paper), gs_orthogonal_chain(256, 4, Layout::Official),
                              GSChain::gs(random_permutation(96), {2, 48, 32}, random_permutation(64), {4, 16, 24},
                                          random_permutation(96)),
                              // 18 pairs per block: one group of 16 plus a scalar tail.
                              GSChain::gs(random_permutation(30), {5, 6, 3}, random_permutation(15), {5, 3, 6},
                                          random_permutation(30))};
  for (const auto& chain : chains) {
    for (int64_t rows : {5, 32, 77}) {
      auto x64 = torch::randn({rows, chain.in_features()}, torch::kFloat64);
      auto b64 = random_blocks(chain, torch::kFloat64, 0.3);
      auto gy64 = torch::randn({rows, chain.out_features()}, torch::kFloat64);
      auto run = [&](torch::ScalarType dt) {
        auto x = x64.to(dt).requires_grad_(true);
        std::vector<torch::Tensor> in{x};
        std::vector<torch::Tensor> blocks;
        for (auto& b : b64) blocks.push_back(b.to(dt).requires_grad_(true));
        in.insert(in.end(), blocks.begin(), blocks.end());
        auto y = dt == torch::kFloat64 ? functional::gs_apply_unfused(chain, x, blocks) : functional::gs_apply(chain, x, blocks);
        return torch::autograd::grad({y}, in, {gy64.to(dt)});
      };
      auto g32 = run(torch::kFloat32), g64 = run(torch::kFloat64);
      for (size_t i = 0; i < g32.size(); ++i) {
        const double scale = g64[i].abs().max().item<double>();
        EXPECT_LT(max_abs_diff(g32[i], g64[i]), 1e-4 * std::max(1.0, scale)) << chain.describe() << " rows " << rows << " input " << i;
      }
    }
  }
}

// The row-layout kernels (the official chain with blocks of 4 or 8 and a multiple of 16 blocks;
// blocks of 16 take the tile kernels, which the same comparisons then check) against float64 autograd of the unfused composition, and against the tile kernels, for
// gs_apply and for gs_apply_scaled (whose backward recovers x from the output); ragged tiles
// (rows not a multiple of 16) included.
TEST(GSKernel, RowKernelsMatchFloat64AndTileKernels) {
#if defined(__AVX512F__)
  EXPECT_TRUE(functional::row_kernels());
  EXPECT_TRUE(functional::row_kernels(gs_orthogonal_chain(768, 96, Layout::Official)));
#endif
  EXPECT_FALSE(functional::row_kernels(gs_orthogonal_chain(768, 96, Layout::Paper)));
  EXPECT_FALSE(functional::row_kernels(gs_orthogonal_chain(1024, 64, Layout::Official)));  // blocks of 16
  struct Shape {
    int64_t n, b;
  };
  for (auto [n, b] : std::vector<Shape>{{64, 4}, {192, 4}, {128, 8}, {768, 8}, {256, 16}, {512, 16}}) {
    const auto chain = gs_orthogonal_chain(n, n / b, Layout::Official);
    for (int64_t rows : {1, 15, 17, 77, 300}) {
      // Orthogonal blocks, as gs_apply_scaled requires; s away from zero with both signs.
      std::vector<torch::Tensor> b64;
      for (int f = 0; f < 2; ++f)
        b64.push_back(functional::orthogonal_blocks(0.4 * torch::randn({n / b, b, b}, torch::kFloat64),
                                                    Parametrization::Cayley));
      const auto x64 = torch::randn({rows, n}, torch::kFloat64);
      const auto s64 = (torch::rand({n}, torch::kFloat64) + 0.5) * (torch::randint(0, 2, {n}, torch::kFloat64) * 2 - 1);
      const auto bias64 = torch::randn({n}, torch::kFloat64);
      const auto g64 = torch::randn({rows, n}, torch::kFloat64);
      // Gradients of <g, op(x)> for x, the blocks and (scaled) s and bias.
      auto run = [&](torch::ScalarType dt, bool scaled, bool reference) {
        auto x = x64.to(dt).requires_grad_(true);
        std::vector<torch::Tensor> blocks;
        for (const auto& blk : b64) blocks.push_back(blk.to(dt).requires_grad_(true));
        auto s = s64.to(dt).requires_grad_(true);
        auto bias = bias64.to(dt).requires_grad_(true);
        std::vector<torch::Tensor> in{x};
        in.insert(in.end(), blocks.begin(), blocks.end());
        torch::Tensor y;
        if (scaled) {
          in.push_back(s);
          in.push_back(bias);
          y = reference ? torch::addcmul(bias, functional::gs_apply_unfused(chain, x, blocks), s)
                        : functional::gs_apply_scaled(chain, x, blocks, s, bias);
        } else {
          y = reference ? functional::gs_apply_unfused(chain, x, blocks) : functional::gs_apply(chain, x, blocks);
        }
        auto grads = torch::autograd::grad({y}, in, {g64.to(dt)});
        grads.insert(grads.begin(), y.detach());
        return grads;
      };
      for (bool scaled : {false, true}) {
        const auto ref = run(torch::kFloat64, scaled, true);
        functional::set_row_kernels(true);
        const auto row = run(torch::kFloat32, scaled, false);
        functional::set_row_kernels(false);
        const auto tile = run(torch::kFloat32, scaled, false);
        functional::set_row_kernels(true);
        ASSERT_EQ(row.size(), ref.size());
        for (size_t i = 0; i < ref.size(); ++i) {
          const double tol = 2e-5 * std::max(1.0, ref[i].abs().max().item<double>());
          EXPECT_LT(max_abs_diff(row[i], ref[i]), tol)
              << "n=" << n << " b=" << b << " rows=" << rows << " scaled=" << scaled << " output/grad " << i;
          EXPECT_LT(max_abs_diff(row[i], tile[i]), tol)
              << "n=" << n << " b=" << b << " rows=" << rows << " scaled=" << scaled << " output/grad " << i;
        }
      }
    }
  }
}

// column_dots against the composed reductions: plain, with a shift, and with the column sums from
// the same pass, on one chunk of rows and on several with a ragged last one; the result is the same
// bit for bit at 1 and 2 threads. A shift of the wrong length names both lengths.
TEST(GSKernel, ColumnDotsWithShiftAndSums) {
  for (int64_t rows : {37, 1000})
    for (auto dt : {torch::kFloat64, torch::kFloat32}) {
      const auto a = torch::randn({rows, 70}, dt), b = torch::randn({rows, 70}, dt), shift = torch::randn({70}, dt);
      const double tol = (dt == torch::kFloat64 ? 1e-12 : 1e-5) * static_cast<double>(rows);
      EXPECT_LT(max_abs_diff(functional::column_dots(a, b), (a * b).sum(0)), tol);
      torch::Tensor sums;
      const auto d = functional::column_dots(a, b, shift, &sums);
      EXPECT_LT(max_abs_diff(d, (a * (b - shift)).sum(0)), tol);
      EXPECT_LT(max_abs_diff(sums, a.sum(0)), tol);
      const int threads = at::get_num_threads();
      at::set_num_threads(threads == 1 ? 2 : 1);
      torch::Tensor sums_other;
      const auto d_other = functional::column_dots(a, b, shift, &sums_other);
      at::set_num_threads(threads);
      EXPECT_TRUE(torch::equal(d, d_other) && torch::equal(sums, sums_other)) << rows << " rows";
    }
  try {
    functional::column_dots(torch::randn({3, 5}), torch::randn({3, 5}), torch::randn({4}));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("shift must have shape (5)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("got [4]"), std::string::npos) << e.what();
  }
}

// scaled_mm puts s on W's rows or on the product's rows: both give s * (x W^T) + b and the input
// gradient (g * s) W, with and without bias.
TEST(GSKernel, ScaledMmMatchesItsFormulaOnBothSides) {
  const auto w = torch::randn({5, 7}, torch::kFloat64), s = torch::rand({5}, torch::kFloat64) + 0.5;
  const auto b = torch::randn({5}, torch::kFloat64);
  for (int64_t rows : {3, 7, 12})  // fewer rows than W's 7 columns, as many, more
    for (bool with_bias : {true, false}) {
      const auto x = torch::randn({rows, 7}, torch::kFloat64), g = torch::randn({rows, 5}, torch::kFloat64);
      auto expect = torch::mm(x, w.t()) * s;
      if (with_bias) expect = expect + b;
      EXPECT_LT(max_abs_diff(functional::scaled_mm(x, w, s, with_bias ? b : torch::Tensor()), expect), 1e-12)
          << "rows " << rows << " bias " << with_bias;
      EXPECT_LT(max_abs_diff(functional::scaled_mm_input_grad(g, w, s), torch::mm(g * s, w)), 1e-12) << "rows " << rows;
    }
}

// gs_linear (out = s * (A_out W A x) + b through the merged weight, A_out optional) against the
// composed ops, with and without a bias and an output chain: float64 central differences on small
// cases (A_out's blocks through the Cayley map, as the backward recovers its input by A_out^T),
// and float32 on the official b=8 chains (the row kernels' backwards) against float64. A weight
// of the wrong width names both widths.
TEST(GSKernel, LinearThroughMergedWeightMatchesComposedOps) {
  auto composed = [](const GSChain& chain, const torch::Tensor& x, const std::vector<torch::Tensor>& blocks,
                     const torch::Tensor& w, const torch::Tensor& s, const torch::Tensor& b, const GSChain* oc,
                     const std::vector<torch::Tensor>& ob) {
    auto y = torch::nn::functional::linear(functional::gs_apply_unfused(chain, x, blocks), w);
    if (oc) y = functional::gs_apply_unfused(*oc, y, ob);
    y = y * s;
    return b.defined() ? y + b : y;
  };
  const auto cayley = [](const torch::Tensor& raw) { return functional::orthogonal_blocks(raw, Parametrization::Cayley); };
  // 6 rows: s applied to the product's rows (fewer rows than W's 8 columns); 9 rows: folded into W.
  for (int64_t batch : {2, 3})
  for (bool two_sided : {false, true})
    for (bool with_bias : {true, false}) {
      const auto chain = gs_orthogonal_chain(8, 2, Layout::Official), out_chain = gs_orthogonal_chain(6, 2, Layout::Official);
      const GSChain* oc = two_sided ? &out_chain : nullptr;
      const auto w = torch::randn({6, 8}, torch::kFloat64);
      const auto G = torch::linspace(-1, 1, batch * 3 * 6, torch::kFloat64).view({batch, 3, 6});
      auto f = [&](const std::vector<torch::Tensor>& in) {
        const std::vector<torch::Tensor> ob = two_sided ? std::vector<torch::Tensor>{cayley(in[5]), cayley(in[6])}
                                                        : std::vector<torch::Tensor>{};
        return (functional::gs_linear(chain, in[0], {in[1], in[2]}, w, in[3], with_bias ? in[4] : torch::Tensor(), oc, ob) *
                G).sum();
      };
      auto blocks = random_blocks(chain);
      auto raw_out = random_blocks(out_chain, torch::kFloat64, 0.5);
      std::vector<torch::Tensor> inputs{torch::randn({batch, 3, 8}, torch::kFloat64), blocks[0], blocks[1],
                                        torch::rand({6}, torch::kFloat64) + 0.5, torch::randn({6}, torch::kFloat64),
                                        raw_out[0], raw_out[1]};
      expect_gradients_match_fd(f, inputs);
      const std::vector<torch::Tensor> ob = two_sided ? std::vector<torch::Tensor>{cayley(raw_out[0]), cayley(raw_out[1])}
                                                      : std::vector<torch::Tensor>{};
      const auto b = with_bias ? inputs[4] : torch::Tensor();
      EXPECT_LT(max_abs_diff(functional::gs_linear(chain, inputs[0], blocks, w, inputs[3], b, oc, ob),
                             composed(chain, inputs[0], blocks, w, inputs[3], b, oc, ob)),
                1e-12)
          << "two-sided " << two_sided << " bias " << with_bias << " rows " << 3 * batch;
    }
  for (bool two_sided : {false, true}) {
    const auto chain = gs_orthogonal_chain(256, 32, Layout::Official), out_chain = gs_orthogonal_chain(128, 16, Layout::Official);
    const GSChain* oc = two_sided ? &out_chain : nullptr;
    auto blocks = random_blocks(chain, torch::kFloat64, 0.3);
    auto raw_out = random_blocks(out_chain, torch::kFloat64, 0.3);
    std::vector<torch::Tensor> in64{torch::randn({1000, 256}, torch::kFloat64), blocks[0], blocks[1],
                                    torch::rand({128}, torch::kFloat64) + 0.5, torch::randn({128}, torch::kFloat64),
                                    raw_out[0], raw_out[1]};
    for (auto& t : in64) t.requires_grad_(true);
    const auto w = torch::randn({128, 256}, torch::kFloat64) / 16;
    const auto G = torch::randn({1000, 128}, torch::kFloat64);
    auto run = [&](const std::vector<torch::Tensor>& in, const torch::Tensor& wt, bool merged) {
      const std::vector<torch::Tensor> ob = two_sided ? std::vector<torch::Tensor>{cayley(in[5]), cayley(in[6])}
                                                      : std::vector<torch::Tensor>{};
      const auto out = merged ? functional::gs_linear(chain, in[0], {in[1], in[2]}, wt, in[3], in[4], oc, ob)
                              : composed(chain, in[0], {in[1], in[2]}, wt, in[3], in[4], oc, ob);
      const std::vector<torch::Tensor> wrt(in.begin(), two_sided ? in.end() : in.begin() + 5);
      return torch::autograd::grad({(out * G.to(wt.scalar_type())).sum()}, wrt);
    };
    const auto ref = run(in64, w, false);
    std::vector<torch::Tensor> in32;
    for (const auto& t : in64) in32.push_back(t.detach().to(torch::kFloat32).requires_grad_(true));
    const auto got = run(in32, w.to(torch::kFloat32), true);
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_LT(max_abs_diff(got[i], ref[i]) / ref[i].abs().max().item<double>(), 1e-4)
          << "two-sided " << two_sided << " input " << i;
  }
  const auto chain = gs_orthogonal_chain(256, 32, Layout::Official);
  const auto x = torch::randn({4, 256}), s = torch::ones({96});
  EXPECT_HAS(error_of([&] { functional::gs_linear(chain, x, random_blocks(chain, torch::kFloat32), torch::randn({96, 128}), s, {}); }),
             "weight must be (out, 256) of dtype Float, got [96, 128]");
}

TEST(GSKernel, BlockGradientsWithoutInputGradient) {
  auto chain = gs_orthogonal_chain(16, 4, Layout::Official);
  auto x = torch::randn({9, 16}, torch::kFloat64);  // no grad
  auto blocks = random_blocks(chain);
  for (auto& b : blocks) b.requires_grad_(true);
  auto g1 = torch::autograd::grad({functional::gs_apply(chain, x, blocks).sum()}, blocks);
  auto g2 = torch::autograd::grad({functional::gs_apply_unfused(chain, x, blocks).sum()}, blocks);
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_LT(max_abs_diff(g1[i], g2[i]), 1e-12);
}

// Finite differences in float64 for every block map and both layouts, through the fused kernel.
TEST(GSKernel, FiniteDifferenceGradientsEveryMapAndLayout) {
  for (auto layout : {Layout::Official, Layout::Paper}) {
    for (auto p : {Parametrization::Cayley, Parametrization::Exp, Parametrization::CayleyNeumann,
                   Parametrization::Free}) {
      auto chain = gs_orthogonal_chain(12, 3, layout);
      auto x = torch::randn({5, 12}, torch::kFloat64);
      auto w = torch::randn({5, 12}, torch::kFloat64);
      auto A_R = 0.3 * torch::randn({3, 4, 4}, torch::kFloat64);
      auto A_L = 0.3 * torch::randn({3, 4, 4}, torch::kFloat64);
      gsoft::test::expect_gradients_match_fd(
          [&](const std::vector<torch::Tensor>& in) {
            auto blocks = std::vector<torch::Tensor>{functional::orthogonal_blocks(in[1], p, 6),
                                                     functional::orthogonal_blocks(in[2], p, 6)};
            return (functional::gs_apply(chain, in[0], blocks) * w).sum();
          },
          {x, A_R, A_L});
      if (HasFatalFailure()) {
        ADD_FAILURE() << "layout " << to_string(layout) << " map " << to_string(p);
        return;
      }
    }
  }
}

// |Q^T Q - I|_max < 1e-5 in float32 for n up to 4096.
TEST(GSKernel, OrthogonalInFloat32UpTo4096) {
  for (auto [n, b] : std::vector<std::pair<int64_t, int64_t>>{{768, 8}, {1024, 32}, {4096, 64}, {4096, 8}}) {
    GSOrthogonal q(GSOrthogonalOptions(n).block_size(b));
    {
      torch::NoGradGuard g;
      q->L.normal_(0, 0.5);
      q->R.normal_(0, 0.5);
    }
    torch::NoGradGuard g;
    auto Q = q->matrix();
    ASSERT_EQ(Q.scalar_type(), torch::kFloat32);
    const double err = (torch::matmul(Q.t(), Q) - torch::eye(n)).abs().max().item<double>();
    EXPECT_LT(err, 1e-5) << "n=" << n << " b=" << b;
  }
}

TEST(GSKernel, ResultDoesNotDependOnThreadCount) {
  auto chain = gs_orthogonal_chain(96, 12, Layout::Official);
  auto blocks = random_blocks(chain, torch::kFloat32);
  for (auto& b : blocks) b.requires_grad_(true);
  auto x = torch::randn({333, 96});
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  auto y1 = functional::gs_apply(chain, x, blocks);
  auto g1 = torch::autograd::grad({y1.sum()}, blocks);
  at::set_num_threads(std::max(2, before));
  auto y2 = functional::gs_apply(chain, x, blocks);
  auto g2 = torch::autograd::grad({y2.sum()}, blocks);
  at::set_num_threads(before);
  EXPECT_TRUE(torch::equal(y1, y2));  // forward is row-independent: bitwise equal
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_LT(max_abs_diff(g1[i], g2[i]), 1e-3);
}

TEST(GSKernel, BadInputErrors) {
  auto chain = gs_orthogonal_chain(12, 3, Layout::Official);
  auto blocks = random_blocks(chain, torch::kFloat32);
  try {
    functional::gs_apply(chain, torch::randn({2, 10}), blocks);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("x has 10 features"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected 12"), std::string::npos) << e.what();
  }
  try {
    functional::gs_apply(chain, torch::randn({2, 12}, torch::kFloat64), blocks);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("dtype Float but x has dtype Double"), std::string::npos) << e.what();
  }
  try {
    functional::gs_apply(chain, torch::randn({2, 12}), {blocks[0]});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("expected 2 block tensors"), std::string::npos) << e.what();
  }
  try {
    auto half = torch::randn({2, 12}).to(torch::kHalf);
    functional::gs_apply(chain, half, {blocks[0].to(torch::kHalf), blocks[1].to(torch::kHalf)});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("float32 or float64"), std::string::npos) << e.what();
  }
}

TEST(GSOrthogonalModule, IdentityAtInitAndPrettyPrint) {
  for (auto p : {Parametrization::Cayley, Parametrization::Exp, Parametrization::CayleyNeumann, Parametrization::Free}) {
    GSOrthogonal q(GSOrthogonalOptions(24).nblocks(4).parametrization(p));
    auto x = torch::randn({5, 24});
    EXPECT_LT(max_abs_diff(q->forward(x), x), 1e-7) << to_string(p);
  }
  GSOrthogonal q(GSOrthogonalOptions(768).block_size(8));
  std::ostringstream os;
  q->pretty_print(os);
  EXPECT_EQ(os.str(), "gsoft::GSOrthogonal(n=768, nblocks=96, block_size=8, parametrization=cayley, layout=official)");
  EXPECT_EQ(q->parameters().size(), 2u);
  auto clone = std::dynamic_pointer_cast<GSOrthogonalImpl>(q->clone());
  ASSERT_TRUE(clone);
  EXPECT_EQ(clone->L.sizes(), q->L.sizes());
  EXPECT_THROW(GSOrthogonal(GSOrthogonalOptions(24).nblocks(4).block_size(6)), std::invalid_argument);
  EXPECT_THROW(GSOrthogonal(GSOrthogonalOptions(24).block_size(5)), std::invalid_argument);
}
