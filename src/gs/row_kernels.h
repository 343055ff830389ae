#pragma once
// Row-layout kernels for GSOFT's official two-factor chain (internal).
//
// For Q = P_(k,n) L P_(B,n) R (the authors' layout, METHOD.md 6.2) with k = n / B blocks, each
// row x becomes
//   y[i*B + o]     = sum_t R_i[o][t] x[i*B + t]        (R: contiguous blocks)
//   out[s*k + l]   = sum_r L_l[s][r] y[r*k + l]        (L: block l reads y at stride k)
// so sixteen consecutive L blocks read and write sixteen consecutive features: L's products
// vectorise across blocks with plain loads and stores, and R's across the B outputs of a block
// with an in-register broadcast. Unlike the tile kernels (kernels.cpp) nothing is transposed, and
// the block gradients need no horizontal sums: each lane is its own block.
#include <cstdint>

#include "gsoft/gs/chain.h"

namespace gsoft::kernels {

struct ChainPlan;

// B if `chain` is the official chain above with B in {4, 8} and k a multiple of 16, else 0.
int64_t official_row_block(const GSChain& chain);

// Whether this build has the row kernels (AVX-512) and they are enabled (set_row_kernels).
bool row_kernels_active();
void set_row_kernels_enabled(bool enabled);

// y = x @ Q^T for plan.row_block != 0; blocks = {R, L} as (k, B, B). With scale (n values, and
// shift, or null), y = scale * (x @ Q^T) + shift, in the same pass.
void row_forward(const ChainPlan& plan, const float* const* blocks, const float* x, float* y, int64_t rows,
                 const float* scale = nullptr, const float* shift = nullptr);

// gx = gy @ Q (gx may be null) and both block gradients, overwritten.
void row_backward(const ChainPlan& plan, const float* const* blocks, const float* x, const float* gy, float* gx,
                  float* const* grad_blocks, int64_t rows);

// The backward of out = scale * (x @ Q^T) + shift for an orthogonal Q, from out instead of x:
// one pass recovers Q x = (out - shift) / scale and x = Q^T (Q x) tile by tile, and writes
// gx = (g * scale) @ Q (gx may be null), both block gradients, grad_scale = sum over rows of
// g * (Q x) and grad_shift = sum over rows of g (each may be null). Every scale must be nonzero.
void row_scaled_backward(const ChainPlan& plan, const float* const* blocks, const float* out, const float* scale,
                         const float* shift, const float* g, float* gx, float* const* grad_blocks, float* grad_scale,
                         float* grad_shift, int64_t rows);

}  // namespace gsoft::kernels
