#pragma once
// Fused CPU kernels for GS chains (internal; see gsoft/gs/functional.h for the public API).
//
// Rows are processed in tiles of L rows. A tile is transposed once into a feature-major buffer
// buf[feature][lane] (lane = row within the tile), so every permutation of the chain becomes an
// index into contiguous L-wide vectors and every block product vectorises across rows. Nothing
// the size of the batch is ever permuted or copied.
#include <cstdint>
#include <vector>

#include "gsoft/gs/chain.h"

namespace gsoft::kernels {

struct ChainPlan {
  std::vector<BlockDiagShape> factors;        // m factors
  std::vector<const int64_t*> sigma;          // m + 1 gather maps
  std::vector<int64_t> out_inverse;           // inverse of the last map: where each output row lands
  int64_t in_features = 0;
  int64_t out_features = 0;
  // B when the chain is GSOFT's official two-factor chain, P_(k,n) L P_(B,n) R with square B x B
  // blocks, B in {4, 8} and k = n / B a multiple of 16: the row-layout kernels
  // (row_kernels.h) then apply to float. 0 otherwise.
  int64_t row_block = 0;

  explicit ChainPlan(const GSChain& chain);
};

// y (rows x out) = x (rows x in) @ A^T. blocks[i] points at factor i's (nblocks, rows, cols)
// contiguous block tensor.
template <typename T>
void chain_forward(const ChainPlan& plan, const T* const* blocks, const T* x, T* y, int64_t rows);

// Given x and the upstream gradient gy (rows x out): writes gx = gy @ A (if gx is not null) and
// the block gradients grad_blocks[i] (overwritten; each may be null to skip nothing: all are
// computed when any is requested).
template <typename T>
void chain_backward(const ChainPlan& plan, const T* const* blocks, const T* x, const T* gy,
                    T* gx, T* const* grad_blocks, int64_t rows);

}  // namespace gsoft::kernels
