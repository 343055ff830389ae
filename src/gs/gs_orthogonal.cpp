#include "gsoft/gs/gs_orthogonal.h"

#include <torch/torch.h>

#include "gsoft/core/error.h"
#include "gsoft/gs/functional.h"

namespace gsoft {

int64_t GSOrthogonalOptions::resolved_nblocks() const {
  GSOFT_CHECK((block_size_ > 0) != (nblocks_ > 0),
              "GSOrthogonal: exactly one of block_size and nblocks must be positive, got block_size=",
              block_size_, " nblocks=", nblocks_);
  if (block_size_ > 0) {
    GSOFT_CHECK(n_ % block_size_ == 0, "GSOrthogonal: n (", n_,
                ") must be divisible by block_size (", block_size_, ")");
    return n_ / block_size_;
  }
  GSOFT_CHECK(n_ % nblocks_ == 0, "GSOrthogonal: n (", n_, ") must be divisible by nblocks (",
              nblocks_, ")");
  return nblocks_;
}

GSOrthogonalImpl::GSOrthogonalImpl(GSOrthogonalOptions options_) : options(std::move(options_)) {
  GSOrthogonalImpl::reset();
}

void GSOrthogonalImpl::reset() {
  const int64_t k = options.resolved_nblocks();
  chain = gs_orthogonal_chain(options.n(), k, options.layout());
  const int64_t b = options.n() / k;
  L = register_parameter("L", torch::empty({k, b, b}));
  R = register_parameter("R", torch::empty({k, b, b}));
  reset_parameters();
}

void GSOrthogonalImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  if (options.parametrization() == Parametrization::Free) {
    const int64_t b = L.size(1);
    L.copy_(torch::eye(b).expand_as(L));
    R.copy_(torch::eye(b).expand_as(R));
  } else {
    L.zero_();
    R.zero_();
  }
}

std::vector<torch::Tensor> GSOrthogonalImpl::blocks() const {
  const auto p = options.parametrization();
  const auto t = options.neumann_terms();
  return {functional::orthogonal_blocks(R, p, t), functional::orthogonal_blocks(L, p, t)};
}

torch::Tensor GSOrthogonalImpl::forward(const torch::Tensor& x) {
  return functional::gs_apply(chain, x, blocks());
}

torch::Tensor GSOrthogonalImpl::forward_transpose(const torch::Tensor& x) {
  return functional::gs_apply_transpose(chain, x, blocks());
}

torch::Tensor GSOrthogonalImpl::matrix() const { return functional::gs_dense(chain, blocks()); }

void GSOrthogonalImpl::pretty_print(std::ostream& stream) const {
  stream << "gsoft::GSOrthogonal(n=" << options.n() << ", nblocks=" << L.size(0)
         << ", block_size=" << L.size(1) << ", parametrization=" << to_string(options.parametrization())
         << ", layout=" << to_string(options.layout()) << ")";
}

}  // namespace gsoft
