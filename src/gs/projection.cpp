#include "gsoft/gs/projection.h"

#include <torch/torch.h>

#include "gsoft/core/error.h"

namespace gsoft {
namespace {

void check_two_factors(const GSChain& chain, const char* op) {
  GSOFT_CHECK(chain.num_factors() == 2, op, ": needs a two-factor GS chain (L and R), got ",
              chain.num_factors(), " factors");
}

// Right-block index of the rank-one term that enters through L's column m.
int64_t right_block_of(const GSChain& chain, int64_t m) {
  return chain.perms()[1][m] / chain.factors()[0].block_rows;
}

}  // namespace

torch::Tensor gs_block_ranks(const GSChain& chain) {
  check_two_factors(chain, "gs_block_ranks");
  const auto& R = chain.factors()[0];
  const auto& L = chain.factors()[1];
  auto ranks = torch::zeros({L.nblocks, R.nblocks}, torch::kLong);
  auto acc = ranks.accessor<int64_t, 2>();
  for (int64_t m = 0; m < L.cols(); ++m) acc[m / L.block_cols][right_block_of(chain, m)] += 1;
  return ranks;
}

std::vector<torch::Tensor> gs_project(const GSChain& chain, const torch::Tensor& a) {
  check_two_factors(chain, "gs_project");
  GSOFT_CHECK(a.dim() == 2 && a.size(0) == chain.out_features() && a.size(1) == chain.in_features(),
              "gs_project: expected a matrix of shape [", chain.out_features(), ", ",
              chain.in_features(), "], got ", format_shape(a.sizes()));
  const auto& Rf = chain.factors()[0];
  const auto& Lf = chain.factors()[1];
  const auto& p_right = chain.perms()[0];
  const auto& p_mid = chain.perms()[1];
  const auto& p_left = chain.perms()[2];

  // A~ = P_L^T A P_R^T: row i of A~ is row sigma_L^-1(i) of A; column j is column sigma_R(j).
  auto ad = a.detach().to(torch::kFloat64).cpu();
  auto inv_left = torch::tensor(p_left.inverse().sigma(), torch::kLong);
  auto right = torch::tensor(p_right.sigma(), torch::kLong);
  auto at = ad.index_select(0, inv_left).index_select(1, right);

  auto L = torch::zeros({Lf.nblocks, Lf.block_rows, Lf.block_cols}, torch::kFloat64);
  auto R = torch::zeros({Rf.nblocks, Rf.block_rows, Rf.block_cols}, torch::kFloat64);

  // Group L's columns m by the (k1, k2) block they feed.
  std::vector<std::vector<std::vector<int64_t>>> terms(
      static_cast<size_t>(Lf.nblocks), std::vector<std::vector<int64_t>>(static_cast<size_t>(Rf.nblocks)));
  for (int64_t m = 0; m < Lf.cols(); ++m)
    terms[static_cast<size_t>(m / Lf.block_cols)][static_cast<size_t>(right_block_of(chain, m))]
        .push_back(m);

  for (int64_t k1 = 0; k1 < Lf.nblocks; ++k1) {
    for (int64_t k2 = 0; k2 < Rf.nblocks; ++k2) {
      const auto& ms = terms[static_cast<size_t>(k1)][static_cast<size_t>(k2)];
      if (ms.empty()) continue;
      auto block = at.slice(0, k1 * Lf.block_rows, (k1 + 1) * Lf.block_rows)
                       .slice(1, k2 * Rf.block_cols, (k2 + 1) * Rf.block_cols);
      auto svd = at::linalg_svd(block, /*full_matrices=*/false);
      auto U = std::get<0>(svd), S = std::get<1>(svd), Vh = std::get<2>(svd);
      const int64_t keep = std::min<int64_t>(static_cast<int64_t>(ms.size()), S.size(0));
      auto sq = S.sqrt();
      for (int64_t j = 0; j < keep; ++j) {
        const int64_t m = ms[static_cast<size_t>(j)];
        const int64_t row_in_r = p_mid[m];
        L[k1].select(1, m - k1 * Lf.block_cols).copy_(U.select(1, j) * sq[j]);
        R[k2].select(0, row_in_r - k2 * Rf.block_rows).copy_(Vh.select(0, j) * sq[j]);
      }
    }
  }
  return {R.to(a.options()), L.to(a.options())};
}

}  // namespace gsoft
