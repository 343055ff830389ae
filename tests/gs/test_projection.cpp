#include <gtest/gtest.h>
#include <torch/torch.h>

#include "gsoft/gs/functional.h"
#include "gsoft/gs/projection.h"
#include "support/helpers.h"

using namespace gsoft;
using gsoft::test::max_abs_diff;
using gsoft::test::random_blocks;
using gsoft::test::random_permutation;

namespace {
std::vector<GSChain> classes() {
  return {gs_orthogonal_chain(12, 3, Layout::Official), gs_orthogonal_chain(16, 4, Layout::Paper),
          GSChain::gs(random_permutation(6), {3, 2, 4}, random_permutation(12), {4, 3, 5}, random_permutation(20)),
          // Blocks that receive more rank-one terms than their size: ranks saturate.
          GSChain::gs(Permutation::identity(8), {2, 4, 6}, Permutation::identity(12), {2, 6, 4}, Permutation::identity(8))};
}
double frob(const torch::Tensor& a) { return a.norm().item<double>(); }
}  // namespace

TEST(GSProjection, RecoversGSMatricesExactly) {
  for (const auto& chain : classes()) {
    auto blocks = random_blocks(chain);
    auto A = functional::gs_dense(chain, blocks);
    auto P = gs_project(chain, A);
    EXPECT_LT(max_abs_diff(functional::gs_dense(chain, P), A), 1e-10) << chain.describe();
  }
}

TEST(GSProjection, BlockRanksCountRankOneTerms) {
  for (const auto& chain : classes()) {
    auto ranks = gs_block_ranks(chain);
    EXPECT_EQ(ranks.sum().item<int64_t>(), chain.factors()[1].cols());
    // A random GS matrix's blocks have exactly those ranks (capped by the block size).
    auto A = functional::gs_dense(chain, random_blocks(chain));
    const auto& Rf = chain.factors()[0];
    const auto& Lf = chain.factors()[1];
    auto at = A.index_select(0, torch::tensor(chain.perms()[2].inverse().sigma()))
                  .index_select(1, torch::tensor(chain.perms()[0].sigma()));
    for (int64_t k1 = 0; k1 < Lf.nblocks; ++k1)
      for (int64_t k2 = 0; k2 < Rf.nblocks; ++k2) {
        auto blk = at.slice(0, k1 * Lf.block_rows, (k1 + 1) * Lf.block_rows)
                       .slice(1, k2 * Rf.block_cols, (k2 + 1) * Rf.block_cols);
        const int64_t expect = std::min({ranks[k1][k2].item<int64_t>(), Lf.block_rows, Rf.block_cols});
        EXPECT_EQ(at::linalg_matrix_rank(blk, 1e-9, false).item<int64_t>(), expect);
      }
  }
}

// No GS matrix of the class is closer to A than the projection: random members and a
// gradient-descent fit started from the projection's neighbourhood and from scratch.
TEST(GSProjection, OptimalAgainstRandomCandidatesAndGradientDescent) {
  for (const auto& chain : classes()) {
    auto A = torch::randn({chain.out_features(), chain.in_features()}, torch::kFloat64);
    const double best = frob(A - functional::gs_dense(chain, gs_project(chain, A)));
    for (int i = 0; i < 50; ++i)
      EXPECT_LE(best, frob(A - functional::gs_dense(chain, random_blocks(chain, torch::kFloat64, 0.5))) + 1e-12);
    auto blocks = random_blocks(chain, torch::kFloat64, 0.3);
    for (auto& b : blocks) b.requires_grad_(true);
    torch::optim::Adam opt(blocks, torch::optim::AdamOptions(0.02));
    double fit = 0;
    for (int step = 0; step < 1500; ++step) {
      opt.zero_grad();
      auto loss = (A - functional::gs_dense(chain, blocks)).pow(2).sum();
      loss.backward();
      opt.step();
      fit = std::sqrt(loss.item<double>());
    }
    EXPECT_LE(best, fit + 1e-9) << chain.describe();
    EXPECT_LT(best, frob(A));
  }
}

TEST(GSProjection, RejectsWrongShapes) {
  auto chain = gs_orthogonal_chain(12, 3, Layout::Official);
  try {
    gs_project(chain, torch::randn({12, 10}));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("expected a matrix of shape [12, 12], got [12, 10]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gs_project(gs_shuffle_chain(8, 2, 3), torch::randn({8, 8})), std::invalid_argument);
}
