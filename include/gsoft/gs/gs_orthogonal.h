#pragma once
// GSOrthogonal: a trainable n x n orthogonal GS matrix Q = P_L L P R (GSOFT's Q), with every
// block of L and R produced from free parameters by an orthogonal block map.
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <ostream>
#include <vector>

#include "gsoft/gs/chain.h"
#include "gsoft/ortho/block_maps.h"

namespace gsoft {

struct GSOrthogonalOptions {
  explicit GSOrthogonalOptions(int64_t n) : n_(n) {}
  // Exactly one of block_size and nblocks must be non-zero.
  TORCH_ARG(int64_t, n);
  TORCH_ARG(int64_t, block_size) = 0;
  TORCH_ARG(int64_t, nblocks) = 0;
  TORCH_ARG(Parametrization, parametrization) = Parametrization::Cayley;
  TORCH_ARG(int64_t, neumann_terms) = 5;
  TORCH_ARG(Layout, layout) = Layout::Official;
 public:
  // nblocks after resolving block_size; throws if n is not divisible.
  int64_t resolved_nblocks() const;
};

class GSOrthogonalImpl : public torch::nn::Cloneable<GSOrthogonalImpl> {
 public:
  explicit GSOrthogonalImpl(GSOrthogonalOptions options);
  void reset() override;
  // Identity: zero free parameters for the orthogonal maps, identity blocks for `free`.
  void reset_parameters();

  // x: (..., n) -> (..., n), every row multiplied by Q.
  torch::Tensor forward(const torch::Tensor& x);
  // Every row multiplied by Q^T.
  torch::Tensor forward_transpose(const torch::Tensor& x);
  // {map(R), map(L)}: the block tensors of the chain's two factors.
  std::vector<torch::Tensor> blocks() const;
  // Dense Q (n x n).
  torch::Tensor matrix() const;
  void pretty_print(std::ostream& stream) const override;

  GSOrthogonalOptions options;
  GSChain chain;
  torch::Tensor L;  // (nblocks, b, b) free parameters of the left factor
  torch::Tensor R;  // (nblocks, b, b) free parameters of the right factor
};
TORCH_MODULE(GSOrthogonal);

}  // namespace gsoft
