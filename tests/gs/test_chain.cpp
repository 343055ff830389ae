#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gsoft/gs/chain.h"
#include "gsoft/gs/functional.h"
#include "gsoft/gs/projection.h"
#include "gsoft/ortho/block_maps.h"
#include "support/helpers.h"

using namespace gsoft;
using gsoft::test::error_of;
using gsoft::test::max_abs_diff;

using gsoft::test::random_blocks;
using gsoft::test::random_permutation;

namespace {
torch::Tensor bd(const torch::Tensor& b) { return functional::block_diag(b); }
}  // namespace

// METHOD.md §2.2: Q_code = P_(b,n)^T L P_(b,n) R = P_(r,n) L P_(r,n)^T R.
TEST(GSChain, OfficialLayoutIsTheAuthorsMatrix) {
  for (auto [n, r] : std::vector<std::pair<int64_t, int64_t>>{{12, 4}, {12, 3}, {40, 8}, {64, 8}}) {
    const int64_t b = n / r;
    auto chain = gs_orthogonal_chain(n, r, Layout::Official);
    auto blocks = random_blocks(chain);
    auto P = Permutation::perfect_shuffle(r, n).matrix(torch::kFloat64);
    auto expect = P.matmul(bd(blocks[1])).matmul(P.t()).matmul(bd(blocks[0]));
    EXPECT_LT(max_abs_diff(functional::gs_dense(chain, blocks), expect), 1e-12) << n << " " << r;
    auto Pb = Permutation::perfect_shuffle(b, n).matrix(torch::kFloat64);
    auto expect2 = Pb.t().matmul(bd(blocks[1])).matmul(Pb).matmul(bd(blocks[0]));
    EXPECT_LT(max_abs_diff(expect, expect2), 1e-12);
  }
}

// The paper's Q = P^T L P R with P = P_(r,n), as an explicit product of matrices.
TEST(GSChain, PaperLayoutIsExplicitProduct) {
  for (auto [n, r] : std::vector<std::pair<int64_t, int64_t>>{{12, 4}, {12, 3}, {40, 5}}) {
    auto chain = gs_orthogonal_chain(n, r, Layout::Paper);
    auto blocks = random_blocks(chain);
    auto P = Permutation::perfect_shuffle(r, n).matrix(torch::kFloat64);
    auto expect = P.t().matmul(bd(blocks[1])).matmul(P).matmul(bd(blocks[0]));
    EXPECT_LT(max_abs_diff(functional::gs_dense(chain, blocks), expect), 1e-12);
  }
}

TEST(GSChain, LayoutsCoincideOnlyWhenBlockSizeEqualsBlockCount) {
  auto same = gs_orthogonal_chain(64, 8, Layout::Official);
  auto same2 = gs_orthogonal_chain(64, 8, Layout::Paper);
  EXPECT_EQ(same.perms()[1], same2.perms()[1]);
  auto a = gs_orthogonal_chain(12, 4, Layout::Official);
  auto b = gs_orthogonal_chain(12, 4, Layout::Paper);
  EXPECT_NE(a.perms()[1], b.perms()[1]);
  EXPECT_DOUBLE_EQ(a.density(), b.density());  // same sparsity fraction, different pattern
  EXPECT_FALSE(torch::equal(a.pattern(), b.pattern()));
}

TEST(GSChain, GeneralDefinition31WithRectangularBlocksAndArbitraryPermutations) {
  // m = bL1*kL = 2*3 = 6, s = bL2*kL = 4*3 = 12 = bR1*kR = 3*4, n = bR2*kR = 5*4 = 20.
  BlockDiagShape L{3, 2, 4}, R{4, 3, 5};
  auto pl = random_permutation(6), pm = random_permutation(12), pr = random_permutation(20);
  auto chain = GSChain::gs(pl, L, pm, R, pr);
  EXPECT_EQ(chain.in_features(), 20);
  EXPECT_EQ(chain.out_features(), 6);
  auto blocks = random_blocks(chain);
  auto expect = pl.matrix(torch::kFloat64).matmul(bd(blocks[1])).matmul(pm.matrix(torch::kFloat64))
                    .matmul(bd(blocks[0])).matmul(pr.matrix(torch::kFloat64));
  EXPECT_LT(max_abs_diff(functional::gs_dense(chain, blocks), expect), 1e-12);
  EXPECT_EQ(chain.num_parameters(), 3 * 2 * 4 + 4 * 3 * 5);
}

// METHOD.md §1.5: GLUE setting n = 768, b = 8 has b/r = 8.3% nonzeros.
TEST(GSChain, DensityOfGlueSetting) {
  auto chain = gs_orthogonal_chain(768, 96, Layout::Official);
  EXPECT_NEAR(chain.density(), 8.0 / 96.0, 1e-12);
  EXPECT_EQ(chain.num_parameters(), 2 * 768 * 8);
  // Structural pattern agrees with the nonzeros of a random dense materialisation.
  auto small = gs_orthogonal_chain(48, 12, Layout::Official);
  auto dense = functional::gs_dense(small, random_blocks(small));
  EXPECT_TRUE(torch::equal(small.pattern(), dense.ne(0)));
}

// Theorem 2: 1 + ceil(log_b r) factors make the product dense; one fewer does not.
TEST(GSChain, Theorem2FactorCount) {
  EXPECT_EQ(factors_for_dense(32, 32), 2);   // the paper's n = 1024, b = 32
  EXPECT_EQ(factors_for_dense(2, 32), 6);    // BOFT's butterflies
  EXPECT_EQ(factors_for_dense(8, 96), 4);
  EXPECT_EQ(factors_for_dense(4, 1), 1);
  for (auto [b, r] : std::vector<std::pair<int64_t, int64_t>>{{2, 4}, {2, 8}, {3, 9}, {3, 10}, {4, 8}, {4, 4}, {5, 3}}) {
    const int64_t m = factors_for_dense(b, r);
    EXPECT_DOUBLE_EQ(gs_shuffle_chain(b * r, r, m).density(), 1.0) << b << " " << r;
    if (m > 1) EXPECT_LT(gs_shuffle_chain(b * r, r, m - 1).density(), 1.0) << b << " " << r;
  }
  EXPECT_THROW(factors_for_dense(1, 4), std::invalid_argument);
}

TEST(GSChain, TransposedChainIsTheTranspose) {
  auto chain = GSChain::gs(Permutation::perfect_shuffle(2, 6), {3, 2, 4}, Permutation::perfect_shuffle(3, 12),
                           {4, 3, 5}, Permutation::identity(20));
  auto blocks = random_blocks(chain);
  std::vector<torch::Tensor> tb{blocks[1].transpose(1, 2), blocks[0].transpose(1, 2)};
  EXPECT_LT(max_abs_diff(functional::gs_dense(chain.transposed(), tb), functional::gs_dense(chain, blocks).t()), 1e-12);
}

TEST(GSChain, ButterflyMultiplyChainIsTheAuthorsRectangularProduct) {
  // (w1, w2) shapes (k, q, p), (l, s, r) with k*q == l*r, square and rectangular.
  const std::vector<std::pair<BlockDiagShape, BlockDiagShape>> cases{
      {{4, 4, 4}, {4, 4, 4}}, {{3, 4, 2}, {2, 5, 6}}, {{6, 2, 3}, {4, 3, 3}}, {{1, 6, 5}, {3, 2, 2}}};
  torch::manual_seed(5);
  for (const auto& [s1, s2] : cases) {
    auto w1 = torch::randn(s1.tensor_shape(), torch::kFloat64);
    auto w2 = torch::randn(s2.tensor_shape(), torch::kFloat64);
    auto x = torch::randn({7, s1.cols()}, torch::kFloat64);
    const auto chain = butterfly_multiply_chain(s1, s2);
    EXPECT_EQ(chain.in_features(), s1.cols());
    EXPECT_EQ(chain.out_features(), s2.rows());
    EXPECT_TRUE(torch::allclose(functional::gs_apply(chain, x, {w1, w2}),
                                functional::reference_butterfly_multiply(x, w1, w2), 1e-12, 1e-12))
        << chain.describe();
  }
  // Square blocks of one size: the official GSOFT chain with w1 = R, w2 = L.
  const auto sq = butterfly_multiply_chain({4, 6, 6}, {4, 6, 6});
  const auto gs = gs_orthogonal_chain(24, 4, Layout::Official);
  EXPECT_EQ(sq.perms(), gs.perms());
  EXPECT_HAS(error_of([] { butterfly_multiply_chain({3, 4, 2}, {5, 2, 2}); }), "gives k*q = 12 features");
}

TEST(GSChain, ErrorsNameExpectedAndActual) {
  try {
    gs_orthogonal_chain(10, 4, Layout::Official);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("n (10) must be divisible by the number of blocks (4)"), std::string::npos) << e.what();
  }
  try {
    GSChain({Permutation::identity(6), Permutation::identity(6)}, {{2, 3, 4}});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("takes 8 inputs"), std::string::npos) << e.what();
  }
  auto chain = gs_orthogonal_chain(12, 3, Layout::Official);
  try {
    chain.check_blocks({torch::zeros({3, 4, 4}), torch::zeros({3, 4, 3})});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("expected shape [3, 4, 4], got [3, 4, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(layout_from_string("offical"), std::invalid_argument);
  EXPECT_EQ(layout_from_string("paper"), Layout::Paper);
}

// Appendix C: Monarch is GS with b = r = sqrt(n); every block of the GS structure has rank one.
TEST(GSChain, MonarchIsASpecialCase) {
  auto chain = monarch_chain(16);
  EXPECT_EQ(chain.factors()[0].nblocks, 4);
  EXPECT_EQ(chain.factors()[0].block_rows, 4);
  EXPECT_TRUE(torch::equal(gs_block_ranks(chain), torch::ones({4, 4}, torch::kLong)));
  EXPECT_DOUBLE_EQ(chain.density(), 1.0);
  EXPECT_THROW(monarch_chain(12), std::invalid_argument);
}

TEST(GSChain, BOFTButterflyPermutationMatchesPEFT) {
  // peft block_butterfly_perm(16, b=2, r=2): chunks of 2 inside super-blocks of 8, evens first.
  const std::vector<int64_t> expect{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
  EXPECT_EQ(boft_butterfly_permutation(16, 2, 2).sigma(), expect);
  EXPECT_TRUE(boft_butterfly_permutation(16, 4, 2).is_identity());  // first factor: identity
}

// PEFT's BOFT: R = M_{m-1} ... M_0 with M_i = P_i BD_i P_i^T, BD_i = (I - S)(I + S)^-1, and the
// layer multiplies inputs by R^T. The chain reproduces R^T with blocks cayley(boft_R[i]) reversed.
TEST(GSChain, BOFTChainReproducesPEFTRotation) {
  const int64_t n = 32, b = 4;
  for (int64_t m : {1, 2, 3}) {
    auto boft_R = 0.3 * torch::randn({m, n / b, b, b}, torch::kFloat64);
    auto R = torch::eye(n, torch::kFloat64);
    for (int64_t i = 0; i < m; ++i) {
      auto S = 0.5 * (boft_R[i] - boft_R[i].transpose(1, 2));
      auto I = torch::eye(b, torch::kFloat64).expand_as(S);
      auto bd = functional::block_diag(torch::matmul(I - S, torch::inverse(I + S)));
      auto P = (m == 1 ? Permutation::identity(n) : boft_butterfly_permutation(n, (n / b) >> i, b / 2)).matrix(torch::kFloat64);
      R = P.matmul(bd).matmul(P.t()).matmul(R);
    }
    auto chain = boft_chain(n, b, m);
    std::vector<torch::Tensor> blocks;
    for (int64_t i = m - 1; i >= 0; --i) blocks.push_back(functional::cayley(boft_R[i]));
    EXPECT_LT(max_abs_diff(functional::gs_dense(chain, blocks), R.t()), 1e-12) << "m=" << m;
    EXPECT_EQ(chain.num_parameters(), m * n * b);
  }
}

// BOFT needs 1 + log2(r) butterfly factors for a dense rotation (METHOD.md §1.5).
TEST(GSChain, BOFTDensityNeedsLogFactors) {
  EXPECT_DOUBLE_EQ(boft_chain(16, 2, 4).density(), 1.0);   // r = 8: 1 + log2 8 = 4
  EXPECT_LT(boft_chain(16, 2, 3).density(), 1.0);
  try {
    boft_chain(24, 4, 3);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("must be a multiple of boft_block_size * 2^(boft_n_butterfly_factor - 1) (16)"),
              std::string::npos) << e.what();
  }
}
