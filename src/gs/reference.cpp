#include <torch/torch.h>

#include "gsoft/core/error.h"
#include "gsoft/gs/functional.h"

namespace gsoft::functional {

torch::Tensor reference_butterfly_multiply(const torch::Tensor& x, const torch::Tensor& w1,
                                           const torch::Tensor& w2) {
  GSOFT_CHECK(w1.dim() == 3 && w2.dim() == 3, "reference_butterfly_multiply: w1 and w2 must be 3-D, got ",
              format_shape(w1.sizes()), " and ", format_shape(w2.sizes()));
  const int64_t k = w1.size(0), q = w1.size(1), p = w1.size(2);
  const int64_t l = w2.size(0), s = w2.size(1), r = w2.size(2);
  GSOFT_CHECK(x.size(-1) == k * p, "reference_butterfly_multiply: x has ", x.size(-1),
              " features, expected k*p = ", k * p);
  GSOFT_CHECK(k * q == l * r, "reference_butterfly_multiply: k*q (", k * q, ") must equal l*r (",
              l * r, ")");
  auto batch_shape = x.sizes().vec();
  batch_shape.pop_back();
  const int64_t batch = x.numel() / (k * p);
  auto xr = x.reshape({batch, k, p}).transpose(0, 1);                       // (k, batch, p)
  auto out1 = torch::bmm(xr, w1.transpose(-1, -2));                          // (k, batch, q)
  out1 = out1.transpose(0, 1).reshape({batch, r, l}).transpose(-1, -2).contiguous().transpose(0, 1);
  auto out2 = torch::bmm(out1, w2.transpose(-1, -2));                        // (l, batch, s)
  batch_shape.push_back(s * l);
  return out2.permute({1, 2, 0}).reshape(batch_shape);
}

}  // namespace gsoft::functional
