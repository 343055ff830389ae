#pragma once
// Fixed permutations of GS matrices, in the "gather" convention:
// (P x)[i] = x[sigma(i)], i.e. P[i, sigma(i)] = 1.
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gsoft {

class Permutation {
 public:
  Permutation() = default;
  // Validates that sigma is a permutation of 0..n-1; throws std::invalid_argument naming the
  // first repeated or out-of-range entry.
  explicit Permutation(std::vector<int64_t> sigma);

  static Permutation identity(int64_t n);
  // The perfect shuffle P_(k,n) of Monarch / Definition 5.2:
  // sigma(i) = (i mod k) * (n/k) + floor(i/k). Equivalent to reshaping x row-major to
  // k x (n/k), transposing, and flattening. Requires k | n.
  static Permutation perfect_shuffle(int64_t k, int64_t n);

  int64_t size() const { return static_cast<int64_t>(sigma_.size()); }
  const std::vector<int64_t>& sigma() const { return sigma_; }
  int64_t operator[](int64_t i) const { return sigma_[static_cast<size_t>(i)]; }

  Permutation inverse() const;  // = P^T
  bool is_identity() const;

  // Dense n x n matrix with P[i, sigma(i)] = 1.
  torch::Tensor matrix(torch::ScalarType dtype = torch::kFloat32) const;
  // Applies P to the last dimension of x: y[..., i] = x[..., sigma(i)].
  torch::Tensor apply(const torch::Tensor& x) const;

  bool operator==(const Permutation& o) const { return sigma_ == o.sigma_; }
  bool operator!=(const Permutation& o) const { return !(*this == o); }

 private:
  std::vector<int64_t> sigma_;
};

// Matrix product a * b of two permutations of the same size: (a b x)[i] = x[sigma_b(sigma_a(i))].
Permutation operator*(const Permutation& a, const Permutation& b);

}  // namespace gsoft
