#include "gsoft/gs/permutation.h"

#include <torch/torch.h>

#include "gsoft/core/error.h"

namespace gsoft {

Permutation::Permutation(std::vector<int64_t> sigma) : sigma_(std::move(sigma)) {
  const int64_t n = size();
  std::vector<char> seen(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = sigma_[static_cast<size_t>(i)];
    GSOFT_CHECK(s >= 0 && s < n, "not a permutation: entry ", i, " is ", s,
                ", expected a value in [0, ", n, ")");
    GSOFT_CHECK(!seen[static_cast<size_t>(s)], "not a permutation: value ", s,
                " appears more than once (again at entry ", i, ")");
    seen[static_cast<size_t>(s)] = 1;
  }
}

Permutation Permutation::identity(int64_t n) {
  GSOFT_CHECK(n >= 0, "permutation size must be non-negative, got ", n);
  std::vector<int64_t> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) s[static_cast<size_t>(i)] = i;
  return Permutation(std::move(s));
}

Permutation Permutation::perfect_shuffle(int64_t k, int64_t n) {
  GSOFT_CHECK(k >= 1 && n >= 1 && n % k == 0, "perfect shuffle P_(k,n): k (", k,
              ") must be a positive divisor of n (", n, ")");
  std::vector<int64_t> s(static_cast<size_t>(n));
  const int64_t q = n / k;
  for (int64_t i = 0; i < n; ++i) s[static_cast<size_t>(i)] = (i % k) * q + i / k;
  return Permutation(std::move(s));
}

Permutation Permutation::inverse() const {
  std::vector<int64_t> inv(sigma_.size());
  for (size_t i = 0; i < sigma_.size(); ++i) inv[static_cast<size_t>(sigma_[i])] = static_cast<int64_t>(i);
  Permutation p;
  p.sigma_ = std::move(inv);
  return p;
}

bool Permutation::is_identity() const {
  for (size_t i = 0; i < sigma_.size(); ++i)
    if (sigma_[i] != static_cast<int64_t>(i)) return false;
  return true;
}

torch::Tensor Permutation::matrix(torch::ScalarType dtype) const {
  const int64_t n = size();
  auto m = torch::zeros({n, n}, torch::TensorOptions().dtype(dtype));
  auto idx = torch::tensor(sigma_, torch::kLong);
  m.scatter_(1, idx.unsqueeze(1), 1);
  return m;
}

torch::Tensor Permutation::apply(const torch::Tensor& x) const {
  GSOFT_CHECK(x.dim() >= 1 && x.size(-1) == size(), "permutation of size ", size(),
              " applied to a tensor whose last dimension is ",
              x.dim() >= 1 ? x.size(-1) : 0);
  return x.index_select(-1, torch::tensor(sigma_, torch::kLong).to(x.device()));
}

Permutation operator*(const Permutation& a, const Permutation& b) {
  GSOFT_CHECK(a.size() == b.size(), "permutation product: sizes differ (", a.size(), " vs ",
              b.size(), ")");
  std::vector<int64_t> s(static_cast<size_t>(a.size()));
  for (int64_t i = 0; i < a.size(); ++i) s[static_cast<size_t>(i)] = b[a[i]];
  return Permutation(std::move(s));
}

}  // namespace gsoft
