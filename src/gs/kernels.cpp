#include "kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace gsoft::kernels {

ChainPlan::ChainPlan(const GSChain& chain)
    : factors(chain.factors()),
      in_features(chain.in_features()),
      out_features(chain.out_features()) {
  for (const auto& p : chain.perms()) {
    sigma.push_back(p.sigma().data());
    inverse.push_back(p.inverse().sigma());
  }
}

namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

template <typename T>
std::unique_ptr<T[], FreeDeleter> aligned_buffer(int64_t count) {
  const size_t bytes = ((static_cast<size_t>(count) * sizeof(T) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, std::max<size_t>(bytes, 64));
  if (!p) throw std::bad_alloc();
  return std::unique_ptr<T[], FreeDeleter>(static_cast<T*>(p));
}

// buf[i][t] = x[t][i] for the tt rows of the tile; lanes past tt are zero.
template <typename T, int L>
void load_tile(const T* x, int64_t n, int64_t tt, T* buf) {
  if (tt < L) std::memset(buf, 0, sizeof(T) * static_cast<size_t>(n) * L);
  for (int64_t t = 0; t < tt; ++t) {
    const T* xr = x + t * n;
    for (int64_t i = 0; i < n; ++i) buf[i * L + t] = xr[i];
  }
}

// buf[sigma_inv[i]][t] = x[t][i]: loads a tile already permuted by P^T (for gradients).
template <typename T, int L>
void load_tile_scatter(const T* x, int64_t n, int64_t tt, const int64_t* dest, T* buf) {
  if (tt < L) std::memset(buf, 0, sizeof(T) * static_cast<size_t>(n) * L);
  for (int64_t t = 0; t < tt; ++t) {
    const T* xr = x + t * n;
    for (int64_t i = 0; i < n; ++i) buf[dest[i] * L + t] = xr[i];
  }
}

// y[t][i] = buf[sigma[i]][t] (sigma may be null for the identity).
template <typename T, int L>
void store_tile(const T* buf, int64_t n, int64_t tt, const int64_t* sigma, T* y) {
  for (int64_t t = 0; t < tt; ++t) {
    T* yr = y + t * n;
    if (sigma) {
      for (int64_t i = 0; i < n; ++i) yr[i] = buf[sigma[i] * L + t];
    } else {
      for (int64_t i = 0; i < n; ++i) yr[i] = buf[i * L + t];
    }
  }
}

// out[j] = sum_c W(j, c) * src[c] for j in [0, R), over L lanes; W(j, c) = w[j * js + c * cs].
// R accumulators stay in registers; lanes vectorise.
template <typename T, int L, int R>
inline void accumulate_rows(const T* w, int64_t js, int64_t cs, int64_t ncols,
                            const T* const* src, T* out) {
  T acc[R][L];
  for (int q = 0; q < R; ++q)
    for (int t = 0; t < L; ++t) acc[q][t] = T(0);
  for (int64_t c = 0; c < ncols; ++c) {
    const T* s = src[c];
    for (int q = 0; q < R; ++q) {
      const T wq = w[q * js + c * cs];
      for (int t = 0; t < L; ++t) acc[q][t] += wq * s[t];
    }
  }
  for (int q = 0; q < R; ++q)
    for (int t = 0; t < L; ++t) out[q * L + t] = acc[q][t];
}

// For each output j in [0, nout): out_rows[j] = sum_c W(j, c) src[c], grouped 8/4/1 at a time.
template <typename T, int L>
inline void small_matmul(const T* w, int64_t js, int64_t cs, int64_t nout, int64_t ncols,
                         const T* const* src, T* out) {
  int64_t j = 0;
  for (; j + 8 <= nout; j += 8) accumulate_rows<T, L, 8>(w + j * js, js, cs, ncols, src, out + j * L);
  for (; j + 4 <= nout; j += 4) accumulate_rows<T, L, 4>(w + j * js, js, cs, ncols, src, out + j * L);
  for (; j < nout; ++j) accumulate_rows<T, L, 1>(w + j * js, js, cs, ncols, src, out + j * L);
}

// Forward through one block-diagonal factor: out = B · (P in), P given by its gather map.
template <typename T, int L>
void factor_forward(const BlockDiagShape& f, const T* B, const int64_t* sigma, const T* in,
                    T* out, const T** src) {
  const int64_t br = f.block_rows, bc = f.block_cols;
  for (int64_t i = 0; i < f.nblocks; ++i) {
    for (int64_t c = 0; c < bc; ++c) src[c] = in + sigma[i * bc + c] * L;
    small_matmul<T, L>(B + i * br * bc, bc, 1, br, bc, src, out + i * br * L);
  }
}

// Pairwise tree sum of L lanes: deterministic, and each level vectorises.
template <typename T, int L>
inline T lane_sum(T* v) {
  for (int h = L / 2; h >= 1; h /= 2)
    for (int t = 0; t < h; ++t) v[t] += v[t + h];
  return v[0];
}

// Backward through one factor. g_out: gradient of the factor's output (rows x L).
// Accumulates gB += g_out_block · in_block^T and, when g_in is not null, writes
// g_in = P^T (B^T g_out).
template <typename T, int L>
void factor_backward(const BlockDiagShape& f, const T* B, const int64_t* sigma, const T* in,
                     const T* g_out, T* gB, T* g_in, const T** src, const T** gsrc, T* tmp) {
  const int64_t br = f.block_rows, bc = f.block_cols;
  for (int64_t i = 0; i < f.nblocks; ++i) {
    for (int64_t c = 0; c < bc; ++c) src[c] = in + sigma[i * bc + c] * L;
    const T* go = g_out + i * br * L;
    T* gBi = gB + i * br * bc;
    for (int64_t r = 0; r < br; ++r) {
      const T* g = go + r * L;
      for (int64_t c = 0; c < bc; ++c) {
        T prod[L];
        const T* s = src[c];
        for (int t = 0; t < L; ++t) prod[t] = g[t] * s[t];
        gBi[r * bc + c] += lane_sum<T, L>(prod);
      }
    }
    if (g_in) {
      // B^T g_out into tmp (contiguous), then scatter rows to their unpermuted slots.
      for (int64_t r = 0; r < br; ++r) gsrc[r] = go + r * L;
      small_matmul<T, L>(B + i * br * bc, 1, bc, bc, br, gsrc, tmp);
      for (int64_t c = 0; c < bc; ++c)
        std::memcpy(g_in + sigma[i * bc + c] * L, tmp + c * L, sizeof(T) * L);
    }
  }
}

int64_t max_width(const ChainPlan& plan) {
  int64_t w = plan.in_features;
  for (const auto& f : plan.factors) w = std::max({w, f.rows(), f.cols()});
  return w;
}

int64_t max_block_dim(const ChainPlan& plan) {
  int64_t d = 1;
  for (const auto& f : plan.factors) d = std::max({d, f.block_rows, f.block_cols});
  return d;
}

template <typename T, int L>
void forward_impl(const ChainPlan& plan, const T* const* blocks, const T* x, T* y, int64_t rows) {
  const int64_t ntiles = (rows + L - 1) / L;
  const int64_t width = max_width(plan);
  const int64_t m = static_cast<int64_t>(plan.factors.size());
  at::parallel_for(0, ntiles, 1, [&](int64_t begin, int64_t end) {
    auto a = aligned_buffer<T>(width * L);
    auto b = aligned_buffer<T>(width * L);
    std::vector<const T*> src(static_cast<size_t>(max_block_dim(plan)));
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t r0 = tile * L;
      const int64_t tt = std::min<int64_t>(L, rows - r0);
      load_tile<T, L>(x + r0 * plan.in_features, plan.in_features, tt, a.get());
      T* cur = a.get();
      T* nxt = b.get();
      for (int64_t s = 0; s < m; ++s) {
        factor_forward<T, L>(plan.factors[s], blocks[s], plan.sigma[s], cur, nxt, src.data());
        std::swap(cur, nxt);
      }
      store_tile<T, L>(cur, plan.out_features, tt, plan.sigma[m], y + r0 * plan.out_features);
    }
  });
}

template <typename T, int L>
void backward_impl(const ChainPlan& plan, const T* const* blocks, const T* x, const T* gy, T* gx,
                   T* const* grad_blocks, int64_t rows) {
  const int64_t ntiles = (rows + L - 1) / L;
  const int64_t width = max_width(plan);
  const int64_t m = static_cast<int64_t>(plan.factors.size());
  const int64_t nchunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), ntiles));
  // Per-chunk partial block gradients, summed in chunk order afterwards (deterministic).
  std::vector<std::vector<T>> partial(static_cast<size_t>(nchunks * m));
  at::parallel_for(0, nchunks, 1, [&](int64_t cbegin, int64_t cend) {
    // acts[s]: input of factor s (after nothing is permuted; gathers happen by index).
    std::vector<std::unique_ptr<T[], FreeDeleter>> acts;
    for (int64_t s = 0; s < m; ++s) acts.push_back(aligned_buffer<T>(width * L));
    auto last = aligned_buffer<T>(width * L);
    auto g_a = aligned_buffer<T>(width * L);
    auto g_b = aligned_buffer<T>(width * L);
    const int64_t bd = max_block_dim(plan);
    auto tmp = aligned_buffer<T>(bd * L);
    std::vector<const T*> src(static_cast<size_t>(bd)), gsrc(static_cast<size_t>(bd));
    for (int64_t chunk = cbegin; chunk < cend; ++chunk) {
      std::vector<T*> gB(static_cast<size_t>(m));
      for (int64_t s = 0; s < m; ++s) {
        auto& p = partial[static_cast<size_t>(chunk * m + s)];
        p.assign(static_cast<size_t>(plan.factors[s].numel()), T(0));
        gB[s] = p.data();
      }
      const int64_t t0 = chunk * ntiles / nchunks, t1 = (chunk + 1) * ntiles / nchunks;
      for (int64_t tile = t0; tile < t1; ++tile) {
        const int64_t r0 = tile * L;
        const int64_t tt = std::min<int64_t>(L, rows - r0);
        load_tile<T, L>(x + r0 * plan.in_features, plan.in_features, tt, acts[0].get());
        for (int64_t s = 0; s < m; ++s) {
          T* out = s + 1 < m ? acts[s + 1].get() : last.get();
          factor_forward<T, L>(plan.factors[s], blocks[s], plan.sigma[s], acts[s].get(), out,
                               src.data());
        }
        // Gradient w.r.t. the last factor's output: y = P_m z, so g_z[sigma_m(i)] = gy[i].
        load_tile_scatter<T, L>(gy + r0 * plan.out_features, plan.out_features, tt,
                                plan.sigma[m], g_a.get());
        T* gcur = g_a.get();
        T* gnext = g_b.get();
        for (int64_t s = m - 1; s >= 0; --s) {
          const bool need_in = s > 0 || gx != nullptr;
          factor_backward<T, L>(plan.factors[s], blocks[s], plan.sigma[s], acts[s].get(), gcur,
                                gB[s], need_in ? gnext : nullptr, src.data(), gsrc.data(),
                                tmp.get());
          std::swap(gcur, gnext);
        }
        if (gx) store_tile<T, L>(gcur, plan.in_features, tt, nullptr, gx + r0 * plan.in_features);
      }
    }
  });
  for (int64_t s = 0; s < m; ++s) {
    if (!grad_blocks[s]) continue;
    const size_t count = static_cast<size_t>(plan.factors[s].numel());
    T* out = grad_blocks[s];
    std::fill(out, out + count, T(0));
    for (int64_t c = 0; c < nchunks; ++c) {
      const auto& p = partial[static_cast<size_t>(c * m + s)];
      for (size_t k = 0; k < count; ++k) out[k] += p[k];
    }
  }
}

}  // namespace

template <typename T>
void chain_forward(const ChainPlan& plan, const T* const* blocks, const T* x, T* y,
                   int64_t rows) {
  if (rows <= 0) return;
  forward_impl<T, 64 / sizeof(T)>(plan, blocks, x, y, rows);
}

template <typename T>
void chain_backward(const ChainPlan& plan, const T* const* blocks, const T* x, const T* gy,
                    T* gx, T* const* grad_blocks, int64_t rows) {
  if (rows <= 0) {
    for (size_t s = 0; s < plan.factors.size(); ++s)
      if (grad_blocks[s]) std::fill(grad_blocks[s], grad_blocks[s] + plan.factors[s].numel(), T(0));
    return;
  }
  // Wider tiles halve the per-tile lane reductions of the block gradients.
  backward_impl<T, 128 / sizeof(T)>(plan, blocks, x, gy, gx, grad_blocks, rows);
}

template void chain_forward<float>(const ChainPlan&, const float* const*, const float*, float*,
                                   int64_t);
template void chain_forward<double>(const ChainPlan&, const double* const*, const double*,
                                    double*, int64_t);
template void chain_backward<float>(const ChainPlan&, const float* const*, const float*,
                                    const float*, float*, float* const*, int64_t);
template void chain_backward<double>(const ChainPlan&, const double* const*, const double*,
                                     const double*, double*, double* const*, int64_t);

}  // namespace gsoft::kernels
