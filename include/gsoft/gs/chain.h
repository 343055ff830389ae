#pragma once
// The Group-and-Shuffle class as a chain of block-diagonal factors and fixed permutations
// (Definitions 3.1 and 5.1 of arXiv 2406.10019):
//
//   A = P_m · B_{m-1} · P_{m-1} · ... · B_0 · P_0
//
// B_i = diag(B_i[0], ..., B_i[k_i - 1]) with blocks of shape (block_rows x block_cols).
// GS(P_L, P, P_R) is the two-factor chain  P_0 = P_R, B_0 = R, P_1 = P, B_1 = L, P_2 = P_L.
// Applied to row vectors: y = A x for every row x of a batch (y = x @ A^T).
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gsoft/gs/permutation.h"

namespace gsoft {

struct BlockDiagShape {
  int64_t nblocks = 0;
  int64_t block_rows = 0;
  int64_t block_cols = 0;
  int64_t rows() const { return nblocks * block_rows; }
  int64_t cols() const { return nblocks * block_cols; }
  int64_t numel() const { return nblocks * block_rows * block_cols; }
  std::vector<int64_t> tensor_shape() const { return {nblocks, block_rows, block_cols}; }
  bool operator==(const BlockDiagShape& o) const {
    return nblocks == o.nblocks && block_rows == o.block_rows && block_cols == o.block_cols;
  }
};

// Which fixed permutations a square two-factor GS orthogonal matrix Q = P_L L P R uses.
enum class Layout {
  // The authors' released code (BlockdiagButterflyMultiply):
  //   Q = P_(b,n)^T L P_(b,n) R = P_(r,n) L P_(r,n)^T R,  b = block size, r = #blocks.
  // Reproduces their checkpoints and the golden vectors.
  Official,
  // The paper's text (Section 5.1): Q = P^T L P R with P = P_(r,n).
  Paper,
};
std::string to_string(Layout layout);
// Accepts "official" or "paper"; throws listing both otherwise.
Layout layout_from_string(const std::string& s);

class GSChain {
 public:
  GSChain() = default;
  // perms.size() must be factors.size() + 1 and every size must chain:
  // perms[i].size() == factors[i].cols(), factors[i].rows() == perms[i+1].size().
  GSChain(std::vector<Permutation> perms, std::vector<BlockDiagShape> factors);

  // GS(P_L, P, P_R): A = P_L · L · P · R · P_R (Definition 3.1).
  static GSChain gs(const Permutation& p_left, const BlockDiagShape& left, const Permutation& p_mid,
                    const BlockDiagShape& right, const Permutation& p_right);

  int64_t num_factors() const { return static_cast<int64_t>(factors_.size()); }
  int64_t in_features() const { return perms_.empty() ? 0 : perms_.front().size(); }
  int64_t out_features() const { return perms_.empty() ? 0 : perms_.back().size(); }
  const std::vector<Permutation>& perms() const { return perms_; }
  const std::vector<BlockDiagShape>& factors() const { return factors_; }

  // Number of stored block entries, sum over factors of nblocks * rows * cols.
  int64_t num_parameters() const;
  // A^T = P_0^T B_0^T ... B_{m-1}^T P_m^T as a chain (blocks must then be transposed too).
  GSChain transposed() const;
  // Structural nonzeros of A as a bool (out_features x in_features) tensor, for generic blocks.
  torch::Tensor pattern() const;
  // Fraction of structural nonzeros in A.
  double density() const;
  // Checks that `blocks` has one (nblocks, rows, cols) tensor per factor; names any mismatch.
  void check_blocks(const std::vector<torch::Tensor>& blocks, const char* what = "blocks") const;
  std::string describe() const;

 private:
  std::vector<Permutation> perms_;
  std::vector<BlockDiagShape> factors_;
};

// The square orthogonal-fine-tuning chain Q = P_L L P R with nblocks blocks of size n/nblocks on
// both factors, in the given layout.
GSChain gs_orthogonal_chain(int64_t n, int64_t nblocks, Layout layout);

// The authors' BlockdiagButterflyMultiply(x, w1, w2) as a chain, for rectangular blocks too:
// w1 (k, q, p) applied first, w2 (l, s, r) second, k*q == l*r, and
//   A = P_(l, l*s) · BD(w2) · P_(r, k*q) · BD(w1)
// (METHOD.md 6.2). With square blocks of one size it is gs_orthogonal_chain(n, k, Official),
// w1 = R and w2 = L.
GSChain butterfly_multiply_chain(const BlockDiagShape& w1, const BlockDiagShape& w2);
// Chain of m square-block factors, all with nblocks blocks of size n/nblocks, with the paper's
// perfect shuffle P_(nblocks, n) between consecutive factors and identities at both ends
// (Theorem 2's construction).
GSChain gs_shuffle_chain(int64_t n, int64_t nblocks, int64_t m);

// Monarch matrices (Dao et al. 2022; Appendix C): n = m^2, Q = P^T L P R with m blocks of m x m
// and P = P_(m,n). Every block of P^T A has rank one (gs_block_ranks is all ones).
GSChain monarch_chain(int64_t n);

// PEFT's BOFT permutation for one butterfly factor (`block_butterfly_perm(n, b, r)` in
// peft/tuners/boft/layer.py): inside each of the `nblocks` super-blocks of n/nblocks entries, the
// chunks of `chunk` entries are reordered even-indexed first, then odd-indexed.
Permutation boft_butterfly_permutation(int64_t n, int64_t nblocks, int64_t chunk);

// The input-side operator of PEFT's BOFT with m = boft_n_butterfly_factor factors of
// (n / block_size) blocks of block_size: PEFT builds R = M_{m-1} ... M_0, M_i = P_i BD_i P_i^T,
// and multiplies inputs by R^T. As a chain that is
//   R^T = P_0 BD_0^T P_0^T · P_1 BD_1^T P_1^T ... P_{m-1} BD_{m-1}^T P_{m-1}^T,
// so the chain's blocks, in chain order, are BD_{m-1}^T, ..., BD_0^T. With PEFT's exact Cayley
// BD_i = (I - S)(I + S)^-1, BD_i^T = functional::cayley(boft_R[i]) in gsoft's orientation.
// Validates the divisibility rules PEFT applies (block count a multiple of 2^(m-1), even sizes).
GSChain boft_chain(int64_t n, int64_t block_size, int64_t n_butterfly_factor);

// Theorem 2: the least number of b x b block factors that makes a GS product with r blocks dense,
// m = 1 + ceil(log_b r). Requires b >= 2 (b = 1 is never dense for r > 1) and r >= 1.
int64_t factors_for_dense(int64_t block_size, int64_t nblocks);

}  // namespace gsoft
