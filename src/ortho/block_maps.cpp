#include "gsoft/ortho/block_maps.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "gsoft/core/error.h"

namespace gsoft {

std::string to_string(Parametrization p) {
  switch (p) {
    case Parametrization::Cayley: return "cayley";
    case Parametrization::Exp: return "exp";
    case Parametrization::CayleyNeumann: return "cayley_neumann";
    case Parametrization::Free: return "free";
  }
  return "unknown";
}

Parametrization parametrization_from_string(const std::string& s) {
  if (s == "cayley") return Parametrization::Cayley;
  if (s == "exp") return Parametrization::Exp;
  if (s == "cayley_neumann") return Parametrization::CayleyNeumann;
  if (s == "free") return Parametrization::Free;
  throw std::invalid_argument("unknown parametrization '" + s +
                              "'; expected one of: cayley, exp, cayley_neumann, free");
}

namespace functional {
namespace {
void check_square(const torch::Tensor& a, const char* op) {
  GSOFT_CHECK(a.defined() && a.dim() >= 2 && a.size(-1) == a.size(-2), op,
              ": expected square blocks (..., b, b), got shape ",
              a.defined() ? format_shape(a.sizes()) : std::string("undefined"));
}
torch::Tensor eye_like(const torch::Tensor& a) {
  return torch::eye(a.size(-1), a.options()).expand_as(a);
}
}  // namespace

torch::Tensor skew(const torch::Tensor& a) {
  check_square(a, "skew");
  return 0.5 * (a - a.transpose(-1, -2));
}

namespace {

// The Cayley map on CPU, all blocks in one parallel loop (LAPACK's batched solve costs a call and,
// with OpenBLAS's OpenMP build, a thread-team start per block; on a busy machine each start can
// wait for a time slice). With M = I - S and N = M^-1:
//   C = (I + S) N = N (I + S) = 2N - I,
//   dC = 2 dN = 2 N dS N, so dL/dS = 2 N^T G N^T and, through S = (A - A^T)/2,
//   dL/dA = T - T^T with T = N^T G N^T.
// M's symmetric part is I (positive definite), so LU without pivoting is stable here.
// Columns [j, j + chunk) of a row live in one 64-byte vector through a whole elimination loop, so
// they stay in a register instead of being loaded and stored once per pivot. GCC's vector
// extension says so explicitly (its auto-vectoriser split a 16-float array into pieces of 8, 4, 2
// and 1); without AVX-512 it lowers to narrower registers.
template <typename T>
struct Chunk {
  typedef T vec __attribute__((vector_size(64)));
  static constexpr int64_t width = 64 / sizeof(T);
  static vec load(const T* p) {
    vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, vec v) { std::memcpy(p, &v, sizeof v); }
};

// dst[j] = src[j] + sign * sum_{p in [p0, p1)} coef[p] * rows[p * b + j] for j in [j0, j1), src
// null meaning zeros. Up to four chunks share each coefficient: four independent chains hide the
// latency of the multiply-add, which one chain per chunk would wait on.
template <typename T, int K>
inline void combine_chunks(T* dst, const T* src, T sign, const T* coef, const T* rows, int64_t b, int64_t p0,
                           int64_t p1, int64_t j) {
  using C = Chunk<T>;
  typename C::vec acc[K];
  for (int k = 0; k < K; ++k) acc[k] = src ? C::load(src + j + k * C::width) : typename C::vec{};
  for (int64_t p = p0; p < p1; ++p) {
    const T c = sign * coef[p];
    const T* r = rows + p * b + j;
    for (int k = 0; k < K; ++k) acc[k] += c * C::load(r + k * C::width);
  }
  for (int k = 0; k < K; ++k) C::store(dst + j + k * C::width, acc[k]);
}

template <typename T>
inline void combine_rows(T* dst, const T* src, T sign, const T* coef, const T* rows, int64_t b, int64_t p0, int64_t p1,
                         int64_t j0, int64_t j1) {
  constexpr int64_t w = Chunk<T>::width;
  int64_t j = j0;
  for (; j + 4 * w <= j1; j += 4 * w) combine_chunks<T, 4>(dst, src, sign, coef, rows, b, p0, p1, j);
  switch ((j1 - j) / w) {
    case 3: combine_chunks<T, 3>(dst, src, sign, coef, rows, b, p0, p1, j); break;
    case 2: combine_chunks<T, 2>(dst, src, sign, coef, rows, b, p0, p1, j); break;
    case 1: combine_chunks<T, 1>(dst, src, sign, coef, rows, b, p0, p1, j); break;
    default: break;
  }
  for (j += (j1 - j) / w * w; j < j1; ++j) {
    T acc = 0;
    for (int64_t p = p0; p < p1; ++p) acc += coef[p] * rows[p * b + j];
    dst[j] = (src ? src[j] : T(0)) + sign * acc;
  }
}

template <typename T>
void invert_i_minus_skew(const T* a, int64_t b, T* n, T* lu) {
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < b; ++j) lu[i * b + j] = (i == j ? T(1) : T(0)) - T(0.5) * (a[i * b + j] - a[j * b + i]);
  for (int64_t p = 0; p < b; ++p) {  // LU in place: L unit lower (below the diagonal), U upper
    const T inv = T(1) / lu[p * b + p];
    for (int64_t i = p + 1; i < b; ++i) {
      const T l = lu[i * b + p] * inv;
      lu[i * b + p] = l;
      T* ri = lu + i * b;
      const T* rp = lu + p * b;
      for (int64_t j = p + 1; j < b; ++j) ri[j] -= l * rp[j];
    }
  }
  // L Y = I: row i of Y is e_i minus a combination of the rows above, zero past column i. Those
  // rows are zero from column i on too, so the columns up to a whole chunk past i may join the
  // vector loop unchanged, sparing it a scalar tail.
  for (int64_t i = 0; i < b; ++i) {
    T* yi = n + i * b;
    for (int64_t j = 0; j < b; ++j) yi[j] = T(0);
    yi[i] = T(1);
    combine_rows(yi, yi, T(-1), lu + i * b, n, b, 0, i, 0, std::min(b, (i + Chunk<T>::width - 1) / Chunk<T>::width * Chunk<T>::width));
  }
  // U N = Y, from the last row up.
  for (int64_t i = b - 1; i >= 0; --i) {
    T* ri = n + i * b;
    combine_rows(ri, ri, T(-1), lu + i * b, n, b, i + 1, b, 0, b);
    const T inv = T(1) / lu[i * b + i];
    for (int64_t j = 0; j < b; ++j) ri[j] *= inv;
  }
}

// out = X Y for b x b row-major matrices, row by row as combinations of Y's rows.
template <typename T>
void matmul_square(const T* x, const T* y, int64_t b, T* out) {
  for (int64_t i = 0; i < b; ++i) combine_rows<T>(out + i * b, nullptr, T(1), x + i * b, y, b, 0, b, 0, b);
}

class CayleyFunction : public torch::autograd::Function<CayleyFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a) {
    const auto a3 = a.reshape({-1, a.size(-1), a.size(-1)}).contiguous();
    const int64_t k = a3.size(0), b = a3.size(-1);
    auto n = torch::empty_like(a3);
    auto c = torch::empty_like(a3);
    AT_DISPATCH_FLOATING_TYPES(a3.scalar_type(), "cayley", [&] {
      const scalar_t* pa = a3.data_ptr<scalar_t>();
      scalar_t* pn = n.data_ptr<scalar_t>();
      scalar_t* pc = c.data_ptr<scalar_t>();
      at::parallel_for(0, k, 1, [&](int64_t i0, int64_t i1) {
        std::vector<scalar_t> lu(static_cast<size_t>(b * b));
        for (int64_t i = i0; i < i1; ++i) {
          invert_i_minus_skew(pa + i * b * b, b, pn + i * b * b, lu.data());
          scalar_t* ci = pc + i * b * b;
          const scalar_t* ni = pn + i * b * b;
          for (int64_t j = 0; j < b * b; ++j) ci[j] = 2 * ni[j];
          for (int64_t j = 0; j < b; ++j) ci[j * (b + 1)] -= 1;
        }
      });
    });
    ctx->save_for_backward({n});
    return c.view(a.sizes());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto n = ctx->get_saved_variables()[0];
    const int64_t k = n.size(0), b = n.size(-1);
    const auto g = grads[0].reshape({k, b, b}).contiguous();
    auto ga = torch::empty_like(n);
    AT_DISPATCH_FLOATING_TYPES(n.scalar_type(), "cayley_backward", [&] {
      const scalar_t* pn = n.data_ptr<scalar_t>();
      const scalar_t* pg = g.data_ptr<scalar_t>();
      scalar_t* po = ga.data_ptr<scalar_t>();
      at::parallel_for(0, k, 1, [&](int64_t i0, int64_t i1) {
        std::vector<scalar_t> nt(static_cast<size_t>(b * b)), u(nt.size()), t(nt.size());
        for (int64_t i = i0; i < i1; ++i) {
          const scalar_t* ni = pn + i * b * b;
          for (int64_t r = 0; r < b; ++r)
            for (int64_t q = 0; q < b; ++q) nt[r * b + q] = ni[q * b + r];
          matmul_square(nt.data(), pg + i * b * b, b, u.data());  // N^T G
          matmul_square(u.data(), nt.data(), b, t.data());        // N^T G N^T
          scalar_t* oi = po + i * b * b;
          for (int64_t r = 0; r < b; ++r)
            for (int64_t q = 0; q < b; ++q) oi[r * b + q] = t[r * b + q] - t[q * b + r];
        }
      });
    });
    return {ga.view(grads[0].sizes())};
  }
};

}  // namespace

torch::Tensor cayley(const torch::Tensor& a) {
  check_square(a, "cayley");
  if (a.device().is_cpu() && (a.scalar_type() == torch::kFloat32 || a.scalar_type() == torch::kFloat64) &&
      a.numel() > 0)
    return CayleyFunction::apply(a);
  auto s = skew(a);
  auto eye = eye_like(a);
  // (I+S) and (I-S) commute, so (I+S)(I-S)^-1 = (I-S)^-1 (I+S): one batched solve.
  return at::linalg_solve(eye - s, eye + s);
}

torch::Tensor block_exp(const torch::Tensor& a) {
  check_square(a, "block_exp");
  return at::linalg_matrix_exp(skew(a));
}

torch::Tensor cayley_neumann(const torch::Tensor& a, int64_t terms) {
  check_square(a, "cayley_neumann");
  GSOFT_CHECK(terms >= 2, "cayley_neumann: terms must be at least 2, got ", terms);
  auto s = skew(a);
  auto out = eye_like(a) + 0 * s;  // materialise, keep the graph
  auto power = s;
  for (int64_t k = 1; k <= terms - 1; ++k) {
    out = out + (k == terms - 1 ? 1.0 : 2.0) * power;
    if (k < terms - 1) power = torch::matmul(power, s);
  }
  return out;
}

torch::Tensor orthogonal_blocks(const torch::Tensor& a, Parametrization p, int64_t neumann_terms) {
  switch (p) {
    case Parametrization::Cayley: return cayley(a);
    case Parametrization::Exp: return block_exp(a);
    case Parametrization::CayleyNeumann: return cayley_neumann(a, neumann_terms);
    case Parametrization::Free: return a;
  }
  throw std::invalid_argument("orthogonal_blocks: unknown parametrization");
}

double orthogonality_error(const torch::Tensor& blocks) {
  check_square(blocks, "orthogonality_error");
  auto b = blocks.detach().to(torch::kFloat64);
  auto g = torch::matmul(b.transpose(-1, -2), b) - eye_like(b);
  return g.abs().max().item<double>();
}

}  // namespace functional
}  // namespace gsoft
