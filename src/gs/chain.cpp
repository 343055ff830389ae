#include "gsoft/gs/chain.h"

#include <torch/torch.h>

#include <sstream>

#include "gsoft/core/error.h"

namespace gsoft {

std::string to_string(Layout layout) {
  return layout == Layout::Official ? "official" : "paper";
}

Layout layout_from_string(const std::string& s) {
  if (s == "official") return Layout::Official;
  if (s == "paper") return Layout::Paper;
  throw std::invalid_argument("unknown GS layout '" + s + "'; expected one of: official, paper");
}

GSChain::GSChain(std::vector<Permutation> perms, std::vector<BlockDiagShape> factors)
    : perms_(std::move(perms)), factors_(std::move(factors)) {
  GSOFT_CHECK(!factors_.empty(), "a GS chain needs at least one block-diagonal factor");
  GSOFT_CHECK(perms_.size() == factors_.size() + 1, "a GS chain with ", factors_.size(),
              " factors needs ", factors_.size() + 1, " permutations, got ", perms_.size());
  for (size_t i = 0; i < factors_.size(); ++i) {
    const auto& f = factors_[i];
    GSOFT_CHECK(f.nblocks >= 1 && f.block_rows >= 1 && f.block_cols >= 1, "factor ", i,
                ": block shape must be positive, got nblocks=", f.nblocks,
                " block_rows=", f.block_rows, " block_cols=", f.block_cols);
    GSOFT_CHECK(perms_[i].size() == f.cols(), "factor ", i, " takes ", f.cols(),
                " inputs (", f.nblocks, " blocks x ", f.block_cols,
                " columns) but the permutation before it has size ", perms_[i].size());
    GSOFT_CHECK(perms_[i + 1].size() == f.rows(), "factor ", i, " produces ", f.rows(),
                " outputs (", f.nblocks, " blocks x ", f.block_rows,
                " rows) but the permutation after it has size ", perms_[i + 1].size());
  }
}

GSChain GSChain::gs(const Permutation& p_left, const BlockDiagShape& left,
                    const Permutation& p_mid, const BlockDiagShape& right,
                    const Permutation& p_right) {
  return GSChain({p_right, p_mid, p_left}, {right, left});
}

int64_t GSChain::num_parameters() const {
  int64_t total = 0;
  for (const auto& f : factors_) total += f.numel();
  return total;
}

GSChain GSChain::transposed() const {
  std::vector<Permutation> perms;
  std::vector<BlockDiagShape> factors;
  for (auto it = perms_.rbegin(); it != perms_.rend(); ++it) perms.push_back(it->inverse());
  for (auto it = factors_.rbegin(); it != factors_.rend(); ++it)
    factors.push_back({it->nblocks, it->block_cols, it->block_rows});
  return GSChain(std::move(perms), std::move(factors));
}

torch::Tensor GSChain::pattern() const {
  // Boolean product of the structural patterns, carried as float 0/1 and clamped each step.
  auto ones_block = [](const BlockDiagShape& f) {
    std::vector<torch::Tensor> blocks(static_cast<size_t>(f.nblocks),
                                      torch::ones({f.block_rows, f.block_cols}));
    return torch::block_diag(blocks);
  };
  auto acc = perms_[0].matrix();
  for (size_t i = 0; i < factors_.size(); ++i) {
    acc = torch::matmul(ones_block(factors_[i]), acc).clamp_max(1);
    acc = torch::matmul(perms_[i + 1].matrix(), acc);
  }
  return acc.gt(0);
}

double GSChain::density() const {
  auto p = pattern();
  return p.sum().item<double>() / static_cast<double>(p.numel());
}

void GSChain::check_blocks(const std::vector<torch::Tensor>& blocks, const char* what) const {
  GSOFT_CHECK(blocks.size() == factors_.size(), what, ": expected ", factors_.size(),
              " block tensors (one per factor), got ", blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    GSOFT_CHECK(blocks[i].defined(), what, "[", i, "] is undefined");
    const auto expect = factors_[i].tensor_shape();
    GSOFT_CHECK(blocks[i].sizes().vec() == expect, what, "[", i, "]: expected shape ",
                format_shape(expect), ", got ", format_shape(blocks[i].sizes()));
  }
}

std::string GSChain::describe() const {
  std::ostringstream os;
  os << "GSChain(in=" << in_features() << ", out=" << out_features() << ", factors=[";
  for (size_t i = 0; i < factors_.size(); ++i) {
    if (i) os << ", ";
    os << factors_[i].nblocks << "x(" << factors_[i].block_rows << "x" << factors_[i].block_cols
       << ")";
  }
  os << "], params=" << num_parameters() << ")";
  return os.str();
}

GSChain gs_orthogonal_chain(int64_t n, int64_t nblocks, Layout layout) {
  GSOFT_CHECK(n >= 1, "GS orthogonal matrix: n must be positive, got ", n);
  GSOFT_CHECK(nblocks >= 1 && n % nblocks == 0, "GS orthogonal matrix: n (", n,
              ") must be divisible by the number of blocks (", nblocks, ")");
  const int64_t b = n / nblocks;
  const BlockDiagShape blocks{nblocks, b, b};
  // Official: P = P_(b,n), P_L = P_(b,n)^T. Paper: P = P_(r,n), P_L = P_(r,n)^T.
  const auto p = layout == Layout::Official ? Permutation::perfect_shuffle(b, n)
                                            : Permutation::perfect_shuffle(nblocks, n);
  return GSChain::gs(p.inverse(), blocks, p, blocks, Permutation::identity(n));
}

GSChain butterfly_multiply_chain(const BlockDiagShape& w1, const BlockDiagShape& w2) {
  GSOFT_CHECK(w1.nblocks >= 1 && w1.block_rows >= 1 && w1.block_cols >= 1 && w2.nblocks >= 1 && w2.block_rows >= 1 &&
                  w2.block_cols >= 1,
              "butterfly multiply: block shapes must be positive, got w1 ", format_shape(w1.tensor_shape()), " and w2 ",
              format_shape(w2.tensor_shape()));
  GSOFT_CHECK(w1.rows() == w2.cols(), "butterfly multiply: w1 (k, q, p) = ", format_shape(w1.tensor_shape()),
              " gives k*q = ", w1.rows(), " features, but w2 (l, s, r) = ", format_shape(w2.tensor_shape()),
              " takes l*r = ", w2.cols());
  // Step 2 of METHOD.md 6.2: in2[l'*r + rho] = y[rho*l + l'] is P_(r, k*q); step 4 is P_(l, l*s).
  return GSChain::gs(Permutation::perfect_shuffle(w2.nblocks, w2.rows()), w2,
                     Permutation::perfect_shuffle(w2.block_cols, w1.rows()), w1, Permutation::identity(w1.cols()));
}

GSChain gs_shuffle_chain(int64_t n, int64_t nblocks, int64_t m) {
  GSOFT_CHECK(m >= 1, "GS chain: number of factors must be positive, got ", m);
  GSOFT_CHECK(nblocks >= 1 && n % nblocks == 0, "GS chain: n (", n,
              ") must be divisible by the number of blocks (", nblocks, ")");
  const int64_t b = n / nblocks;
  std::vector<Permutation> perms{Permutation::identity(n)};
  for (int64_t i = 1; i < m; ++i) perms.push_back(Permutation::perfect_shuffle(nblocks, n));
  perms.push_back(Permutation::identity(n));
  return GSChain(std::move(perms),
                 std::vector<BlockDiagShape>(static_cast<size_t>(m), {nblocks, b, b}));
}

GSChain monarch_chain(int64_t n) {
  int64_t m = 1;
  while (m * m < n) ++m;
  GSOFT_CHECK(n >= 1 && m * m == n, "Monarch matrix: n (", n, ") must be a perfect square");
  return gs_orthogonal_chain(n, m, Layout::Paper);
}

Permutation boft_butterfly_permutation(int64_t n, int64_t nblocks, int64_t chunk) {
  GSOFT_CHECK(nblocks >= 1 && chunk >= 1 && n % nblocks == 0 && (n / nblocks) % (2 * chunk) == 0,
              "BOFT butterfly permutation: n (", n, ") must split into ", nblocks,
              " super-blocks, each a multiple of 2 * chunk (", 2 * chunk, ")");
  const int64_t super = n / nblocks, chunks = super / chunk;
  std::vector<int64_t> order;  // chunk order inside a super-block: evens, then odds
  for (int64_t c = 0; c < chunks; c += 2) order.push_back(c);
  for (int64_t c = 1; c < chunks; c += 2) order.push_back(c);
  std::vector<int64_t> s(static_cast<size_t>(n));
  for (int64_t base = 0; base < n; base += super)
    for (int64_t k = 0; k < chunks; ++k)
      for (int64_t e = 0; e < chunk; ++e)
        s[static_cast<size_t>(base + k * chunk + e)] = base + order[static_cast<size_t>(k)] * chunk + e;
  return Permutation(std::move(s));
}

GSChain boft_chain(int64_t n, int64_t block_size, int64_t n_butterfly_factor) {
  const int64_t m = n_butterfly_factor;
  GSOFT_CHECK(m >= 1, "BOFT: boft_n_butterfly_factor must be at least 1, got ", m);
  GSOFT_CHECK(block_size >= 1 && n % block_size == 0, "BOFT: in_features (", n,
              ") must be divisible by boft_block_size (", block_size, ")");
  const int64_t nblocks = n / block_size;
  std::vector<Permutation> p;  // PEFT's P_i
  if (m == 1) {
    p.push_back(Permutation::identity(n));
  } else {
    GSOFT_CHECK(n % (block_size << (m - 1)) == 0, "BOFT: in_features (", n,
                ") must be a multiple of boft_block_size * 2^(boft_n_butterfly_factor - 1) (",
                block_size << (m - 1), ")");
    GSOFT_CHECK(block_size % 2 == 0 && nblocks % 2 == 0, "BOFT: boft_block_size (", block_size,
                ") and the block count (", nblocks, ") must be even for more than one factor");
    for (int64_t i = 0; i < m; ++i)
      p.push_back(boft_butterfly_permutation(n, nblocks >> i, block_size / 2));
  }
  // Chain order: the first factor applied is BD_{m-1}^T, preceded by P_{m-1}^T.
  std::vector<Permutation> perms{p[static_cast<size_t>(m - 1)].inverse()};
  for (int64_t j = 1; j < m; ++j)
    perms.push_back(p[static_cast<size_t>(m - 1 - j)].inverse() * p[static_cast<size_t>(m - j)]);
  perms.push_back(p[0]);
  return GSChain(std::move(perms),
                 std::vector<BlockDiagShape>(static_cast<size_t>(m), {nblocks, block_size, block_size}));
}

int64_t factors_for_dense(int64_t block_size, int64_t nblocks) {
  GSOFT_CHECK(block_size >= 2, "factors_for_dense: block size must be at least 2, got ",
              block_size);
  GSOFT_CHECK(nblocks >= 1, "factors_for_dense: number of blocks must be positive, got ",
              nblocks);
  // Smallest e with b^e >= r, computed in integers.
  int64_t e = 0;
  for (int64_t reach = 1; reach < nblocks; reach *= block_size) ++e;
  return 1 + e;
}

}  // namespace gsoft
