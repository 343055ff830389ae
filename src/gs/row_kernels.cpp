#include "row_kernels.h"

#include <atomic>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernel_util.h"
#include "kernels.h"

namespace gsoft::kernels {

int64_t official_row_block(const GSChain& chain) {
  if (chain.num_factors() != 2) return 0;
  const auto& f = chain.factors();
  const int64_t k = f[0].nblocks, b = f[0].block_rows;
  // Blocks of 16 measured slower here than on the tile kernels: a group's weights (32 KB) then
  // fill L1 (docs/benchmarks.md, session 11).
  if (!(f[0] == f[1]) || f[0].block_cols != b || (b != 4 && b != 8) || k % 16 != 0) return 0;
  const int64_t n = k * b;
  const auto& p = chain.perms();
  if (p[0] != Permutation::identity(n) || p[1] != Permutation::perfect_shuffle(b, n) ||
      p[2] != Permutation::perfect_shuffle(k, n))
    return 0;
  return b;
}

namespace {
std::atomic<bool> g_row_kernels{true};
}  // namespace

void set_row_kernels_enabled(bool enabled) { g_row_kernels.store(enabled, std::memory_order_relaxed); }

#if GSOFT_AVX512

bool row_kernels_active() { return g_row_kernels.load(std::memory_order_relaxed); }

namespace {

// Rows per tile. A tile's rows stay in L2 while the kernels walk its groups. 8 measured no slower
// than 16 or 32 at n = 768, and faster at n = 3072, where rows 12 KB apart fall in the same L1 sets.
constexpr int64_t kTile = 8;

// Lane (blk, j) of the result = v's lane (blk, t), for blocks of B lanes.
template <int B>
inline __m512 lane_bcast(__m512 v, int t) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_permutexvar_ps(_mm512_add_epi32(_mm512_set1_epi32(t), _mm512_and_si512(lane, _mm512_set1_epi32(~(B - 1)))),
                               v);
}

// The blocks in lane order. For chunk c (features 16c .. 16c + 15, lane = (blk, e)):
//   wr[c][a][lane]  = R_blk[e][a]   (stage 1: y = sum_t wr[t] * bcast_t(x))
//   wrt[c][a][lane] = R_blk[a][e]   (its transpose, for gx)
// and for group g (L blocks 16g .. 16g + 15, lane = block): wl[g][s][r][lane] = L_(16g+lane)[s][r].
struct RowWeights {
  int64_t b = 0, k = 0, n = 0;
  std::unique_ptr<float[], FreeDeleter> wr, wrt, wl;

  RowWeights(int64_t b_, int64_t k_, const float* R, const float* L, bool with_transpose)
      : b(b_), k(k_), n(b_ * k_), wr(aligned_buffer<float>(n * b)), wl(aligned_buffer<float>(n * b)) {
    if (with_transpose) wrt = aligned_buffer<float>(n * b);
    for (int64_t c = 0; c < n / 16; ++c)
      for (int64_t a = 0; a < b; ++a)
        for (int64_t lane = 0; lane < 16; ++lane) {
          const float* Rb = R + (16 * c + lane) / b * b * b;
          const int64_t e = lane % b;
          wr[(c * b + a) * 16 + lane] = Rb[e * b + a];
          if (wrt) wrt[(c * b + a) * 16 + lane] = Rb[a * b + e];
        }
    for (int64_t g = 0; g < k / 16; ++g)
      for (int64_t s = 0; s < b; ++s)
        for (int64_t r = 0; r < b; ++r)
          for (int64_t lane = 0; lane < 16; ++lane)
            wl[((g * b + s) * b + r) * 16 + lane] = L[((16 * g + lane) * b + s) * b + r];
  }
};

// Prefetches [begin, end) into L2 a share per step: these kernels visit a tile's rows 64 bytes at
// a time at strides of k floats, which the hardware prefetcher does not follow, while the next
// tile's rows are contiguous.
struct Prefetcher {
  const char* p;
  const char* end;
  int64_t per_step;
  Prefetcher(const float* begin, const float* end_, int64_t steps)
      : p(reinterpret_cast<const char*>(begin)),
        end(reinterpret_cast<const char*>(end_)),
        per_step(end > p ? ((end - p) / 64 + steps - 1) / steps : 0) {}
  void step() {
    for (int64_t q = 0; q < per_step && p < end; ++q, p += 64) _mm_prefetch(p, _MM_HINT_T1);
  }
};

// Stage 1 on one chunk of 16 features: y = sum_t wr[t] * bcast_t(x).
template <int B>
inline __m512 stage1(const float* wr, const float* xp) {
  const __m512 xv = _mm512_loadu_ps(xp);
  __m512 acc = _mm512_mul_ps(_mm512_load_ps(wr), lane_bcast<B>(xv, 0));
#pragma GCC unroll 16
  for (int t = 1; t < B; ++t) acc = _mm512_fmadd_ps(_mm512_load_ps(wr + 16 * t), lane_bcast<B>(xv, t), acc);
  return acc;
}

// Rows [r0, r1) of one tile, group-outer so that a group's weights (B * B * 32 floats) stay in L1.
// Group g reads x and writes out only at features r*k + 16g. With scale (and shift), the stored
// row is scale * (Q x) + shift.
template <int B>
void forward_tile(const RowWeights& w, const float* x, float* out, int64_t r0, int64_t r1, int64_t rows,
                  const float* scale, const float* shift) {
  const int64_t k = w.k, n = w.n, groups = k / 16;
  Prefetcher next(x + r1 * n, x + std::min(rows, 2 * r1 - r0) * n, groups * (r1 - r0));
  for (int64_t g = 0; g < groups; ++g) {
    const float* wl = w.wl.get() + g * B * B * 16;
    for (int64_t r = r0; r < r1; ++r) {
      next.step();
      const float* xr = x + r * n + 16 * g;
      float* orow = out + r * n + 16 * g;
      __m512 y[B];
#pragma GCC unroll 16
      for (int rho = 0; rho < B; ++rho) y[rho] = stage1<B>(w.wr.get() + (rho * k / 16 + g) * B * 16, xr + rho * k);
#pragma GCC unroll 16
      for (int s = 0; s < B; ++s) {
        __m512 acc = _mm512_mul_ps(_mm512_load_ps(wl + s * B * 16), y[0]);
#pragma GCC unroll 16
        for (int rho = 1; rho < B; ++rho) acc = _mm512_fmadd_ps(_mm512_load_ps(wl + (s * B + rho) * 16), y[rho], acc);
        if (scale) {
          const int64_t p = s * k + 16 * g;
          acc = shift ? _mm512_fmadd_ps(acc, _mm512_loadu_ps(scale + p), _mm512_loadu_ps(shift + p))
                      : _mm512_mul_ps(acc, _mm512_loadu_ps(scale + p));
        }
        _mm512_storeu_ps(orow + s * k, acc);
      }
    }
  }
}

// Output rows s handled together when accumulating L's gradients: 16 accumulators, so that they
// stay in registers (with the scale's sums beside them when scaled).
template <int B, bool Scaled>
constexpr int kLRows = (B == 4 && !Scaled) ? 4 : 2;

// What a backward tile reads and writes. Plain (gs_apply): x and the output gradient gy.
// Scaled (gs_apply_scaled, out = s * (Q x) + bias): the output rows `out` instead of x, from which
// z = Q x = (out - bias) / s and h = R x = L^T-side of z are recovered, and g = d out, so that
// d(Q x) = g * s; the sums for s's and bias's gradients ride along.
struct BackwardIo {
  const float* x = nullptr;
  const float* out = nullptr;
  const float* scale = nullptr;
  const float* inv_scale = nullptr;
  const float* shift = nullptr;
  const float* gy = nullptr;
  float* gx = nullptr;
};

// One chunk's partial sums: accL [k/16][B][B][16] and accR [n/16][B][16] in lane order, and for
// the scaled form accS[j] = sum g * z and accB[j] = sum g (n each).
struct Partials {
  float* accL;
  float* accR;
  float* accS;
  float* accB;
};

// Backward over rows [r0, r1) of one tile (at most kTile). Per group g:
//   A. h = R x (plain: stage 1 again; scaled: L^T z) and gyin = L^T d(Qx), into per-tile buffers;
//   B. accL[g][s][r][lane] += d(Qx)_s * h_r over the tile's rows, accumulators in registers;
//   C. per chunk: accR[c][o][(blk, t)] += gyin_(blk, o) * x_(blk, t) and gx = R^T gyin, sharing
//      the broadcasts of gyin (scaled: x = R^T h first).
template <int B, bool Scaled>
void backward_tile(const RowWeights& w, const BackwardIo& io, const Partials& acc_out, int64_t r0, int64_t r1,
                   int64_t rows, float* hbuf, float* gbuf) {
  const int64_t k = w.k, n = w.n, groups = k / 16, tt = r1 - r0;
  const float* first = Scaled ? io.out : io.x;
  Prefetcher next_x(first + r1 * n, first + std::min(rows, 2 * r1 - r0) * n, groups * tt);
  Prefetcher next_g(io.gy + r1 * n, io.gy + std::min(rows, 2 * r1 - r0) * n, groups * tt);
  for (int64_t g = 0; g < groups; ++g) {
    const float* wl = w.wl.get() + g * B * B * 16;
    for (int64_t r = 0; r < tt; ++r) {
      next_x.step();
      next_g.step();
      const float* gr = io.gy + (r0 + r) * n + 16 * g;
      if constexpr (!Scaled) {
        const float* xr = io.x + (r0 + r) * n + 16 * g;
#pragma GCC unroll 16
        for (int rho = 0; rho < B; ++rho)
          _mm512_store_ps(hbuf + (r * B + rho) * 16, stage1<B>(w.wr.get() + (rho * k / 16 + g) * B * 16, xr + rho * k));
      }
      // gyin (and, scaled, h) as sums over s of L[s][rho] times output-side vectors: v[0] = d(Qx)
      // for gyin, v[1] = z for h.
      constexpr int kSums = Scaled ? 2 : 1;
      __m512 acc[kSums][B];
#pragma GCC unroll 2
      for (int q = 0; q < kSums; ++q)
#pragma GCC unroll 16
        for (int rho = 0; rho < B; ++rho) acc[q][rho] = _mm512_setzero_ps();
#pragma GCC unroll 16
      for (int s = 0; s < B; ++s) {
        const int64_t p = s * k + 16 * g;
        __m512 v[kSums];
        if constexpr (Scaled) {
          v[0] = _mm512_mul_ps(_mm512_loadu_ps(gr + s * k), _mm512_loadu_ps(io.scale + p));
          v[1] = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(io.out + (r0 + r) * n + p), _mm512_loadu_ps(io.shift + p)),
                               _mm512_loadu_ps(io.inv_scale + p));
        } else {
          v[0] = _mm512_loadu_ps(gr + s * k);
        }
#pragma GCC unroll 16
        for (int rho = 0; rho < B; ++rho) {
          const __m512 wv = _mm512_load_ps(wl + (s * B + rho) * 16);
#pragma GCC unroll 2
          for (int q = 0; q < kSums; ++q) acc[q][rho] = _mm512_fmadd_ps(wv, v[q], acc[q][rho]);
        }
      }
#pragma GCC unroll 2
      for (int q = 0; q < kSums; ++q)
#pragma GCC unroll 16
        for (int rho = 0; rho < B; ++rho) _mm512_store_ps((q == 0 ? gbuf : hbuf) + (r * B + rho) * 16, acc[q][rho]);
    }
    constexpr int S = kLRows<B, Scaled>;
    float* aL = acc_out.accL + g * B * B * 16;
    for (int s0 = 0; s0 < B; s0 += S) {
      __m512 acc[S][B], sum_gz[S], sum_g[S];
#pragma GCC unroll 4
      for (int q = 0; q < S; ++q) {
        sum_gz[q] = sum_g[q] = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int rho = 0; rho < B; ++rho) acc[q][rho] = _mm512_load_ps(aL + ((s0 + q) * B + rho) * 16);
      }
      for (int64_t r = 0; r < tt; ++r) {
        const float* gr = io.gy + (r0 + r) * n + 16 * g;
        __m512 gs[S];
#pragma GCC unroll 4
        for (int q = 0; q < S; ++q) {
          gs[q] = _mm512_loadu_ps(gr + (s0 + q) * k);
          if constexpr (Scaled) {
            const int64_t p = (s0 + q) * k + 16 * g;
            const __m512 z = _mm512_mul_ps(
                _mm512_sub_ps(_mm512_loadu_ps(io.out + (r0 + r) * n + p), _mm512_loadu_ps(io.shift + p)),
                _mm512_loadu_ps(io.inv_scale + p));
            sum_gz[q] = _mm512_fmadd_ps(gs[q], z, sum_gz[q]);
            sum_g[q] = _mm512_add_ps(sum_g[q], gs[q]);
            gs[q] = _mm512_mul_ps(gs[q], _mm512_loadu_ps(io.scale + p));
          }
        }
#pragma GCC unroll 16
        for (int rho = 0; rho < B; ++rho) {
          const __m512 hv = _mm512_load_ps(hbuf + (r * B + rho) * 16);
#pragma GCC unroll 4
          for (int q = 0; q < S; ++q) acc[q][rho] = _mm512_fmadd_ps(gs[q], hv, acc[q][rho]);
        }
      }
#pragma GCC unroll 4
      for (int q = 0; q < S; ++q) {
#pragma GCC unroll 16
        for (int rho = 0; rho < B; ++rho) _mm512_store_ps(aL + ((s0 + q) * B + rho) * 16, acc[q][rho]);
        if constexpr (Scaled) {
          const int64_t p = (s0 + q) * k + 16 * g;
          _mm512_store_ps(acc_out.accS + p, _mm512_add_ps(_mm512_load_ps(acc_out.accS + p), sum_gz[q]));
          _mm512_store_ps(acc_out.accB + p, _mm512_add_ps(_mm512_load_ps(acc_out.accB + p), sum_g[q]));
        }
      }
    }
    for (int rho = 0; rho < B; ++rho) {
      const int64_t c = rho * k / 16 + g;
      const float* wrt = w.wrt.get() + c * B * 16;
      float* aR = acc_out.accR + c * B * 16;
      __m512 acc[B];
#pragma GCC unroll 16
      for (int o = 0; o < B; ++o) acc[o] = _mm512_load_ps(aR + o * 16);
      for (int64_t r = 0; r < tt; ++r) {
        __m512 xv;
        if constexpr (Scaled) {
          const float* hp = hbuf + (r * B + rho) * 16;
          const __m512 hv = _mm512_load_ps(hp);
          xv = _mm512_mul_ps(_mm512_load_ps(wrt), lane_bcast<B>(hv, 0));
#pragma GCC unroll 16
          for (int o = 1; o < B; ++o) xv = _mm512_fmadd_ps(_mm512_load_ps(wrt + o * 16), lane_bcast<B>(hv, o), xv);
        } else {
          xv = _mm512_loadu_ps(io.x + (r0 + r) * n + 16 * c);
        }
        const float* gp = gbuf + (r * B + rho) * 16;
        const __m512 gv = _mm512_load_ps(gp);
        __m512 gxv = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int o = 0; o < B; ++o) {
          const __m512 go = lane_bcast<B>(gv, o);
          acc[o] = _mm512_fmadd_ps(go, xv, acc[o]);
          gxv = _mm512_fmadd_ps(_mm512_load_ps(wrt + o * 16), go, gxv);
        }
        if (io.gx) _mm512_storeu_ps(io.gx + (r0 + r) * n + 16 * c, gxv);
      }
#pragma GCC unroll 16
      for (int o = 0; o < B; ++o) _mm512_store_ps(aR + o * 16, acc[o]);
    }
  }
}

template <int B>
void forward_rows(const ChainPlan& plan, const float* const* blocks, const float* x, float* y, int64_t rows,
                  const float* scale, const float* shift) {
  const int64_t k = plan.factors[0].nblocks;
  const RowWeights w(B, k, blocks[0], blocks[1], false);
  const int64_t ntiles = (rows + kTile - 1) / kTile;
  // Items of a few tiles each, as in the tile kernels' forward.
  const int64_t per_item = std::max<int64_t>(1, ntiles / (16 * std::max(1, at::get_num_threads())));
  const int64_t items = (ntiles + per_item - 1) / per_item;
  for_each_item(
      items, [] { return 0; },
      [&](int64_t item, int) {
        const int64_t end = std::min(rows, (item + 1) * per_item * kTile);
        for (int64_t r0 = item * per_item * kTile; r0 < end; r0 += kTile)
          forward_tile<B>(w, x, y, r0, std::min(end, r0 + kTile), end, scale, shift);
      });
}

// Runs the backward tiles in chunks with their own partial sums, then sums the chunks in chunk
// order into the block gradients (and, scaled, the scale's and shift's gradients).
template <int B, bool Scaled>
void backward_rows(const ChainPlan& plan, const float* const* blocks, const BackwardIo& io, float* const* grad_blocks,
                   float* grad_scale, float* grad_shift, int64_t rows) {
  const int64_t k = plan.factors[0].nblocks, n = k * B, lanes = n * B;
  const RowWeights w(B, k, blocks[0], blocks[1], true);
  const int64_t ntiles = (rows + kTile - 1) / kTile;
  const int64_t per_chunk = 2 * lanes + (Scaled ? 2 * n : 0);
  const int64_t nchunks = backward_chunks(ntiles, per_chunk * static_cast<int64_t>(sizeof(float)));
  std::vector<std::unique_ptr<float[], FreeDeleter>> partial(static_cast<size_t>(nchunks));
  struct Scratch {
    std::unique_ptr<float[], FreeDeleter> hbuf, gbuf;
  };
  for_each_item(
      nchunks,
      [] { return Scratch{aligned_buffer<float>(kTile * B * 16), aligned_buffer<float>(kTile * B * 16)}; },
      [&](int64_t chunk, Scratch& s) {
        auto acc = aligned_buffer<float>(per_chunk);
        std::memset(acc.get(), 0, sizeof(float) * static_cast<size_t>(per_chunk));
        const Partials parts{acc.get(), acc.get() + lanes, acc.get() + 2 * lanes, acc.get() + 2 * lanes + n};
        const int64_t first = chunk * ntiles / nchunks * kTile;
        const int64_t end = std::min(rows, (chunk + 1) * ntiles / nchunks * kTile);
        for (int64_t r0 = first; r0 < end; r0 += kTile)
          backward_tile<B, Scaled>(w, io, parts, r0, std::min(end, r0 + kTile), end, s.hbuf.get(), s.gbuf.get());
        partial[static_cast<size_t>(chunk)] = std::move(acc);
      });
  // Each element sums the chunks in chunk order, then goes back to its block: L's lane index
  // ((g*B + s)*B + r)*16 + lane is L_(16g+lane)[s][r]; R's (c*B + o)*16 + lane is R_blk[o][t] with
  // (blk, t) the lane's feature 16c + lane.
  float* gR = grad_blocks[0];
  float* gL = grad_blocks[1];
  at::parallel_for(0, per_chunk, std::max<int64_t>(1, (int64_t{1} << 18) / nchunks), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      float sum = 0;
      for (int64_t c = 0; c < nchunks; ++c) sum += partial[static_cast<size_t>(c)][q];
      const int64_t lane = q % 16;
      if (q < lanes) {
        if (gL) gL[(16 * (q / 16 / (B * B)) + lane) * B * B + q / 16 % (B * B)] = sum;
      } else if (q < 2 * lanes) {
        const int64_t o = (q - lanes) / 16 % B, feature = 16 * ((q - lanes) / 16 / B) + lane;
        if (gR) gR[(feature / B * B + o) * B + feature % B] = sum;
      } else if (q < 2 * lanes + n) {
        if (grad_scale) grad_scale[q - 2 * lanes] = sum;
      } else if (grad_shift) {
        grad_shift[q - 2 * lanes - n] = sum;
      }
    }
  });
}

template <typename F>
void dispatch_block(int64_t b, F f) {
  if (b == 4) return f(std::integral_constant<int, 4>());
  return f(std::integral_constant<int, 8>());
}

}  // namespace

void row_forward(const ChainPlan& plan, const float* const* blocks, const float* x, float* y, int64_t rows,
                 const float* scale, const float* shift) {
  dispatch_block(plan.row_block, [&](auto b) { forward_rows<b()>(plan, blocks, x, y, rows, scale, shift); });
}

void row_backward(const ChainPlan& plan, const float* const* blocks, const float* x, const float* gy, float* gx,
                  float* const* grad_blocks, int64_t rows) {
  BackwardIo io;
  io.x = x;
  io.gy = gy;
  io.gx = gx;
  dispatch_block(plan.row_block,
                 [&](auto b) { backward_rows<b(), false>(plan, blocks, io, grad_blocks, nullptr, nullptr, rows); });
}

void row_scaled_backward(const ChainPlan& plan, const float* const* blocks, const float* out, const float* scale,
                         const float* shift, const float* g, float* gx, float* const* grad_blocks, float* grad_scale,
                         float* grad_shift, int64_t rows) {
  const int64_t n = plan.in_features;
  auto inv = aligned_buffer<float>(n);
  for (int64_t j = 0; j < n; ++j) inv[j] = 1.0f / scale[j];
  BackwardIo io;
  io.out = out;
  io.scale = scale;
  io.inv_scale = inv.get();
  io.shift = shift;
  io.gy = g;
  io.gx = gx;
  dispatch_block(plan.row_block, [&](auto b) {
    backward_rows<b(), true>(plan, blocks, io, grad_blocks, grad_scale, grad_shift, rows);
  });
}

#else

bool row_kernels_active() { return false; }
void row_forward(const ChainPlan&, const float* const*, const float*, float*, int64_t, const float*, const float*) {}
void row_backward(const ChainPlan&, const float* const*, const float*, const float*, float*, float* const*,
                  int64_t) {}
void row_scaled_backward(const ChainPlan&, const float* const*, const float*, const float*, const float*,
                         const float*, float*, float* const*, float*, float*, int64_t) {}

#endif

}  // namespace gsoft::kernels
