#pragma once
// Differentiable operations on GS chains. Shapes: x is (..., in_features); blocks[i] is
// (nblocks_i, block_rows_i, block_cols_i), one tensor per factor of the chain.
#include <torch/types.h>

#include <vector>

#include "gsoft/gs/chain.h"

namespace gsoft::functional {

// y = A x for every row x of the batch (y = x @ A^T), through the fused CPU kernel with a
// hand-written backward (gradients for x and every block). float32 and float64; CPU tensors.
// Tensors on other devices fall back to gs_apply_unfused.
torch::Tensor gs_apply(const GSChain& chain, const torch::Tensor& x,
                       const std::vector<torch::Tensor>& blocks);

// out = s * (A x) + bias for every row, A orthogonal (blocks from an exact orthogonal map), s of
// shape (out_features), bias of shape (out_features) or undefined. Keeps only out, s and bias for
// the backward, which recovers A x = (out - bias) / s and x = A^T (A x): no activation memory for
// the rotation's input, for one more pass of the kernel. The recovery needs every |s| well away
// from 0 and A orthogonal to float precision; callers check both.
torch::Tensor gs_apply_scaled(const GSChain& chain, const torch::Tensor& x, const std::vector<torch::Tensor>& blocks,
                              const torch::Tensor& s, const torch::Tensor& bias);

// out = s * (W (A x)) + bias for every row x, with W a frozen (out, in) weight: single-sided GSOFT
// with its scale. With out_chain, out = s * (A_out W A x) + bias: Double GSOFT, A_out orthogonal
// (its blocks from an exact orthogonal map). The forward multiplies x by the merged weight (the
// chains applied to W's rows and columns instead of the batch: cheaper when the batch has more
// rows than W has), so it costs the frozen layer's product plus passes over W. The backward
// forms the gradient for W A x (through s, or as gs_apply_scaled's backward for A_out, from out),
// multiplies it by W as the frozen layer's backward does, then forms the input's and A's blocks'
// gradients in one kernel pass over x. s's and bias's gradients come from out ((out - bias) / s,
// so every |s| must be well away from 0; callers check). Keeps x and out. W gets no gradient.
// CPU, float32/float64; bias may be undefined.
torch::Tensor gs_linear(const GSChain& chain, const torch::Tensor& x, const std::vector<torch::Tensor>& blocks,
                        const torch::Tensor& weight, const torch::Tensor& s, const torch::Tensor& bias,
                        const GSChain* out_chain = nullptr, const std::vector<torch::Tensor>& out_blocks = {});

// y = A^T x for every row (y = x @ A).
torch::Tensor gs_apply_transpose(const GSChain& chain, const torch::Tensor& x,
                                 const std::vector<torch::Tensor>& blocks);

// The same product composed from libtorch ops (index_select + batched matmul), differentiable
// by autograd, any device and dtype. The readable definition the kernel is tested against.
torch::Tensor gs_apply_unfused(const GSChain& chain, const torch::Tensor& x,
                               const std::vector<torch::Tensor>& blocks);

// The dense (out_features x in_features) matrix A; differentiable.
torch::Tensor gs_dense(const GSChain& chain, const std::vector<torch::Tensor>& blocks);

// The authors' BlockdiagButterflyMultiply(x, w1, w2) written with libtorch ops: bmm, transposes
// and contiguous copies, exactly as in their PyTorch code (METHOD.md §6.2). x: (..., k*p),
// w1: (k, q, p), w2: (l, s, r) with k*q == l*r. Autograd supplies the backward. Used as the
// benchmark baseline and as an independent check of the official layout.
torch::Tensor reference_butterfly_multiply(const torch::Tensor& x, const torch::Tensor& w1,
                                           const torch::Tensor& w2);

// d[j] = sum over rows r of a[r][j] * (b[r][j] - shift[j]) for two (rows, n) tensors (CPU,
// float32/float64; shift of shape (n) or undefined for 0), without the (rows, n) temporaries that
// ((b - shift) * a).sum(0) allocates: a scale's gradient from a layer's output, in a backward whose
// peak memory is made of such temporaries. With `sums`, also *sums = a.sum(0) (a bias's gradient)
// from the same pass. Not differentiable.
torch::Tensor column_dots(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& shift = {},
                          torch::Tensor* sums = nullptr);

// s ⊙ (x wᵀ) + bias for 2-D x and w (bias undefined for none), with s applied on whichever side
// moves fewer bytes: folded into w's rows (a pass over w) when x has at least as many rows as w
// has columns, else on the product's rows, in the same pass as the bias (the GEMM writes, or
// zero-fills and reads, its output either way). Not differentiable: for autograd functions whose
// backward uses scaled_mm_input_grad.
torch::Tensor scaled_mm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& s,
                        const torch::Tensor& bias = {});
// (g ⊙ s) w, the input gradient of scaled_mm for the output gradient g, with s on the same side.
torch::Tensor scaled_mm_input_grad(const torch::Tensor& g, const torch::Tensor& w, const torch::Tensor& s);

// Float chains in the authors' GSOFT layout (square blocks of 4 or 8, and a multiple of 16
// blocks) run on row-layout kernels that need no transposes, on builds with AVX-512; every other
// chain, and every chain after set_row_kernels(false), on the general tile kernels. The switch is
// global, for benchmarks and tests that compare the two; both give the same values up to float
// rounding. row_kernels() says whether the row kernels are in use (false without AVX-512), and
// row_kernels(chain) whether float products on `chain` run on them.
void set_row_kernels(bool enabled);
bool row_kernels();
bool row_kernels(const GSChain& chain);

// Block-diagonal matrix from (nblocks, rows, cols) blocks; differentiable.
torch::Tensor block_diag(const torch::Tensor& blocks);

}  // namespace gsoft::functional
