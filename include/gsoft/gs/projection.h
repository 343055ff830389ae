#pragma once
// Projection of a dense matrix onto a two-factor GS class (Algorithm 1 of arXiv 2406.10019).
#include <torch/types.h>

#include <vector>

#include "gsoft/gs/chain.h"

namespace gsoft {

// Best Frobenius-norm approximation of `a` (out_features x in_features) by P_L L P R P_R with the
// permutations and block shapes of `chain` (which must have exactly two factors). Every rank-one
// term u_m v_sigma(m)^T of L P R lands in exactly one block of P_L^T A P_R^T, so the problem
// splits into independent truncated SVDs, one per block (Eckart-Young).
// Returns {R, L} as unconstrained (free) blocks in a's dtype, ready for functional::gs_apply.
std::vector<torch::Tensor> gs_project(const GSChain& chain, const torch::Tensor& a);

// For each block (k1, k2) of L P R, the number of rank-one terms it receives (its rank bound),
// as an int64 (k_L x k_R) tensor.
torch::Tensor gs_block_ranks(const GSChain& chain);

}  // namespace gsoft
