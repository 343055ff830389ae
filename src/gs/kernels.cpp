#include "kernels.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>

#include "kernel_util.h"
#include "row_kernels.h"

namespace gsoft::kernels {

ChainPlan::ChainPlan(const GSChain& chain)
    : factors(chain.factors()),
      in_features(chain.in_features()),
      out_features(chain.out_features()) {
  for (const auto& p : chain.perms()) sigma.push_back(p.sigma().data());
  out_inverse = chain.perms().back().inverse().sigma();
  row_block = official_row_block(chain);
}

namespace {

#if GSOFT_AVX512
// dst[j * ds + i] = rows[i][offset + j] for a 16 x 16 float block, in registers:
// unpack pairs, shuffle quads, then a 4 x 4 transpose of 128-bit lanes.
__attribute__((always_inline)) inline void transpose16x16(const float* const* rows, int64_t offset, float* dst,
                                                          int64_t ds) {
  __m512 r[16], t[16], u[4][4];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(rows[i] + offset);
  for (int g = 0; g < 4; ++g) {
    t[4 * g + 0] = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
    t[4 * g + 1] = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
    t[4 * g + 2] = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
    t[4 * g + 3] = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
  }
  for (int g = 0; g < 4; ++g) {
    // u[g][e], 128-bit lane l = rows 4g..4g+3 of column 4l + e.
    u[g][0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[g][1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[g][2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[g][3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int e = 0; e < 4; ++e) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[0][e], u[1][e], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(u[0][e], u[1][e], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[2][e], u[3][e], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(u[2][e], u[3][e], 0xEE);
    _mm512_storeu_ps(dst + (0 + e) * ds, _mm512_shuffle_f32x4(v0, v2, 0x88));
    _mm512_storeu_ps(dst + (4 + e) * ds, _mm512_shuffle_f32x4(v0, v2, 0xDD));
    _mm512_storeu_ps(dst + (8 + e) * ds, _mm512_shuffle_f32x4(v1, v3, 0x88));
    _mm512_storeu_ps(dst + (12 + e) * ds, _mm512_shuffle_f32x4(v1, v3, 0xDD));
  }
}

inline void transpose16x16(const float* src, int64_t ss, float* dst, int64_t ds) {
  const float* rows[16];
  for (int i = 0; i < 16; ++i) rows[i] = src + i * ss;
  transpose16x16(rows, 0, dst, ds);
}

// gB[q][c] += sum_t g[q][t] * St[t][c] for q < RB and 16 V columns: RB x V accumulators stay in
// registers over the L lanes. St is (L x ld), gB has row stride ld.
template <int L, int RB, int V>
inline void outer_accumulate(const float* const* g, const float* St, int64_t ld, float* gB) {
  __m512 acc[RB][V];
#pragma GCC unroll 8
  for (int q = 0; q < RB; ++q)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[q][v] = _mm512_setzero_ps();
  for (int t = 0; t < L; ++t) {
    __m512 s[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) s[v] = _mm512_loadu_ps(St + t * ld + 16 * v);
#pragma GCC unroll 8
    for (int q = 0; q < RB; ++q) {
      const __m512 gq = _mm512_set1_ps(g[q][t]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[q][v] = _mm512_fmadd_ps(gq, s[v], acc[q][v]);
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < RB; ++q)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      float* p = gB + q * ld + 16 * v;
      _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), acc[q][v]));
    }
}

// Lane j of the result = sum of the 16 lanes of p[j]: pairwise unpack-adds, then a 4 x 4
// transpose of 128-bit lanes and three adds (about 3 operations per vector).
inline __m512 reduce16(const __m512* p) {
  __m512 w[8], x[4];
  for (int k = 0; k < 8; ++k)
    w[k] = _mm512_add_ps(_mm512_unpacklo_ps(p[2 * k], p[2 * k + 1]),
                         _mm512_unpackhi_ps(p[2 * k], p[2 * k + 1]));
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(w[2 * g]), b = _mm512_castps_pd(w[2 * g + 1]);
    // 128-bit lane l of x[g] = partial sums of p[4g..4g+3] over lane l of the inputs.
    x[g] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  const __m512 v0 = _mm512_shuffle_f32x4(x[0], x[1], 0x44), v1 = _mm512_shuffle_f32x4(x[0], x[1], 0xEE);
  const __m512 v2 = _mm512_shuffle_f32x4(x[2], x[3], 0x44), v3 = _mm512_shuffle_f32x4(x[2], x[3], 0xEE);
  const __m512 y0 = _mm512_shuffle_f32x4(v0, v2, 0x88), y1 = _mm512_shuffle_f32x4(v0, v2, 0xDD);
  const __m512 y2 = _mm512_shuffle_f32x4(v1, v3, 0x88), y3 = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  return _mm512_add_ps(_mm512_add_ps(y0, y1), _mm512_add_ps(y2, y3));
}

// Block gradient for narrow blocks: gBi[k] += <g_r, s_c> for the flattened pairs k = r * bc + c,
// sixteen pairs per reduce16. Returns the number of pairs done (a multiple of 16).
template <int L>
int64_t block_grad_dot16(const float* const* grows, const float* const* src, int64_t br, int64_t bc,
                         float* gBi) {
  const int64_t npairs = br * bc;
  int64_t k0 = 0, r = 0, c = 0;  // (r, c) = the pair k0 + j, advanced without division
  for (; k0 + 16 <= npairs; k0 += 16) {
    __m512 p[16];
    for (int j = 0; j < 16; ++j) {
      const float* g = grows[r];
      const float* sc = src[c];
      if (++c == bc) {
        c = 0;
        ++r;
      }
      __m512 acc = _mm512_mul_ps(_mm512_load_ps(g), _mm512_load_ps(sc));
#pragma GCC unroll 8
      for (int v = 1; v < L / 16; ++v)
        acc = _mm512_fmadd_ps(_mm512_load_ps(g + 16 * v), _mm512_load_ps(sc + 16 * v), acc);
      p[j] = acc;
    }
    _mm512_storeu_ps(gBi + k0, _mm512_add_ps(_mm512_loadu_ps(gBi + k0), reduce16(p)));
  }
  return k0;
}

// Block gradient for blocks 8 columns wide over one 16-lane tile, an even number of rows (b = 8,
// GSOFT's default on language models): with 16 lanes, the 4 x 4 form spends more on its horizontal
// reductions than on the products. Here the 8 S rows are transposed as 8 x 8 pairs of lanes, so
// st[p] holds lanes (2p, 2p + 1) of every S row; each G row then meets st[p] through a broadcast
// of its own lane pair, and only adjacent lanes are summed at the end.
inline void block_grad_pairs8(const float* const* grows, const float* const* src, int64_t br, float* gBi) {
  __m512d r[8], t[8], st[8];
  for (int c = 0; c < 8; ++c) r[c] = _mm512_castps_pd(_mm512_load_ps(src[c]));
  for (int i = 0; i < 8; i += 2) {  // t: pairs of rows interleaved by lane pair
    t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
  }
  const __m512d b0 = _mm512_shuffle_f64x2(t[0], t[2], _MM_SHUFFLE(2, 0, 2, 0)),
                b1 = _mm512_shuffle_f64x2(t[0], t[2], _MM_SHUFFLE(3, 1, 3, 1)),
                b2 = _mm512_shuffle_f64x2(t[1], t[3], _MM_SHUFFLE(2, 0, 2, 0)),
                b3 = _mm512_shuffle_f64x2(t[1], t[3], _MM_SHUFFLE(3, 1, 3, 1)),
                b4 = _mm512_shuffle_f64x2(t[4], t[6], _MM_SHUFFLE(2, 0, 2, 0)),
                b5 = _mm512_shuffle_f64x2(t[4], t[6], _MM_SHUFFLE(3, 1, 3, 1)),
                b6 = _mm512_shuffle_f64x2(t[5], t[7], _MM_SHUFFLE(2, 0, 2, 0)),
                b7 = _mm512_shuffle_f64x2(t[5], t[7], _MM_SHUFFLE(3, 1, 3, 1));
  st[0] = _mm512_shuffle_f64x2(b0, b4, _MM_SHUFFLE(2, 0, 2, 0));
  st[4] = _mm512_shuffle_f64x2(b0, b4, _MM_SHUFFLE(3, 1, 3, 1));
  st[2] = _mm512_shuffle_f64x2(b1, b5, _MM_SHUFFLE(2, 0, 2, 0));
  st[6] = _mm512_shuffle_f64x2(b1, b5, _MM_SHUFFLE(3, 1, 3, 1));
  st[1] = _mm512_shuffle_f64x2(b2, b6, _MM_SHUFFLE(2, 0, 2, 0));
  st[5] = _mm512_shuffle_f64x2(b2, b6, _MM_SHUFFLE(3, 1, 3, 1));
  st[3] = _mm512_shuffle_f64x2(b3, b7, _MM_SHUFFLE(2, 0, 2, 0));
  st[7] = _mm512_shuffle_f64x2(b3, b7, _MM_SHUFFLE(3, 1, 3, 1));
  // Row q's sums, lanes 2c and 2c + 1 summing the even and odd lanes of <g_q, s_c>; then the
  // adjacent lanes of rows q and q + 1 are added and put in row order.
  const __m512i order = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  for (int64_t q = 0; q < br; q += 2) {
    __m512 acc[2];
    for (int h = 0; h < 2; ++h) {
      const float* g = grows[q + h];
      acc[h] = _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int p = 0; p < 8; ++p) {
        double pair;
        std::memcpy(&pair, g + 2 * p, sizeof pair);
        acc[h] = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(pair)), _mm512_castpd_ps(st[p]), acc[h]);
      }
    }
    const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(acc[0], acc[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                      _mm512_shuffle_ps(acc[0], acc[1], _MM_SHUFFLE(3, 1, 3, 1)));
    float* dst = gBi + q * 8;
    _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), _mm512_permutexvar_ps(order, sums)));
  }
}

// Block gradient for narrow blocks whose sides are multiples of 4: 4 x 4 pairs at a time, so each
// lane vector of a G row or an S row is loaded once for four products (the pairwise form loads
// both for one), then one reduce16 for the 16 sums.
template <int L>
void block_grad_4x4(const float* const* grows, const float* const* src, int64_t br, int64_t bc, float* gBi) {
  for (int64_t r0 = 0; r0 < br; r0 += 4)
    for (int64_t c0 = 0; c0 < bc; c0 += 4) {
      __m512 acc[16];
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) acc[k] = _mm512_setzero_ps();
#pragma GCC unroll 4
      for (int v = 0; v < L / 16; ++v) {
        __m512 g[4], sv[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
          g[q] = _mm512_load_ps(grows[r0 + q] + 16 * v);
          sv[q] = _mm512_load_ps(src[c0 + q] + 16 * v);
        }
#pragma GCC unroll 4
        for (int a = 0; a < 4; ++a)
#pragma GCC unroll 4
          for (int c = 0; c < 4; ++c) acc[4 * a + c] = _mm512_fmadd_ps(g[a], sv[c], acc[4 * a + c]);
      }
      alignas(64) float sums[16];  // sums[4a + c] = <g_{r0+a}, s_{c0+c}>
      _mm512_store_ps(sums, reduce16(acc));
      for (int a = 0; a < 4; ++a) {
        float* dst = gBi + (r0 + a) * bc + c0;
        _mm_storeu_ps(dst, _mm_add_ps(_mm_loadu_ps(dst), _mm_load_ps(sums + 4 * a)));
      }
    }
}

template <int L, int RB>
inline void outer_rows(const float* const* g, const float* St, int64_t ld, int64_t nvec, float* gB) {
  switch (nvec) {
    case 1: outer_accumulate<L, RB, 1>(g, St, ld, gB); break;
    case 2: outer_accumulate<L, RB, 2>(g, St, ld, gB); break;
    case 3: outer_accumulate<L, RB, 3>(g, St, ld, gB); break;
    default: outer_accumulate<L, RB, 4>(g, St, ld, gB); break;
  }
}

// Block gradient gBi (br x bc) += G (br x L) · S^T (L x bc) for bc % 16 == 0, as outer products on
// a transposed copy of S: no per-element horizontal reductions.
template <int L>
void block_grad_outer(const float* const* grows, const float* const* src, int64_t br, int64_t bc,
                      float* gBi, float* St) {
  for (int64_t c0 = 0; c0 < bc; c0 += 16)
    for (int t0 = 0; t0 < L; t0 += 16) transpose16x16(src + c0, t0, St + t0 * bc + c0, bc);
  for (int64_t c0 = 0; c0 < bc; c0 += 64) {
    const int64_t nvec = std::min<int64_t>(4, (bc - c0) / 16);
    int64_t r = 0;
    for (; r + 4 <= br; r += 4) outer_rows<L, 4>(grows + r, St + c0, bc, nvec, gBi + r * bc + c0);
    for (; r < br; ++r) outer_rows<L, 1>(grows + r, St + c0, bc, nvec, gBi + r * bc + c0);
  }
}
#endif

// dst[j * ds + i] = src[i * ss + j] for i < rows, j < cols.
template <typename T>
void transpose(const T* src, int64_t ss, T* dst, int64_t ds, int64_t rows, int64_t cols) {
  int64_t j0 = 0;
#if GSOFT_AVX512
  if constexpr (std::is_same_v<T, float>) {
    const int64_t r16 = rows - rows % 16, c16 = cols - cols % 16;
    for (int64_t i = 0; i < r16; i += 16)
      for (int64_t j = 0; j < c16; j += 16) transpose16x16(src + i * ss + j, ss, dst + j * ds + i, ds);
    // Remainders: rows past r16 for all columns, and columns past c16 for the first r16 rows.
    for (int64_t i = r16; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) dst[j * ds + i] = src[i * ss + j];
    if (r16 == 0) return;
    rows = r16;
    j0 = c16;
  }
#endif
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = j0; j < cols; ++j) dst[j * ds + i] = src[i * ss + j];
}

// buf[i][t] = x[t][i] for the tt rows of the tile; lanes past tt are zero.
template <typename T, int L>
void load_tile(const T* x, int64_t n, int64_t tt, T* buf) {
  if (tt < L) std::memset(buf, 0, sizeof(T) * static_cast<size_t>(n) * L);
  transpose(x, n, buf, L, tt, n);
}

// y[t][i] = buf[i][t] for the tt rows of the tile.
template <typename T, int L>
void store_tile(const T* buf, int64_t n, int64_t tt, T* y) {
  transpose(buf, L, y, n, n, tt);
}

// out[q] = sum_c W(q, c) * src[c] for q in [0, R), over L lanes, with W(q, c) = w[q + c * cs]:
// the R weights of one input row are contiguous, so one pointer walks them and the R
// accumulators stay in registers.
template <typename T, int L, int R>
inline void accumulate_rows(const T* w, int64_t cs, int64_t ncols, const T* const* src,
                            T* const* out) {
#if GSOFT_AVX512
  if constexpr (std::is_same_v<T, float> && L % 16 == 0) {
    constexpr int V = L / 16;
    __m512 acc[R][V];
#pragma GCC unroll 16
    for (int q = 0; q < R; ++q)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[q][v] = _mm512_setzero_ps();
    const T* wc = w;
    for (int64_t c = 0; c < ncols; ++c, wc += cs) {
      const float* sc = src[c];
      __m512 s[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) s[v] = _mm512_load_ps(sc + 16 * v);
#pragma GCC unroll 16
      for (int q = 0; q < R; ++q) {
        const __m512 wq = _mm512_set1_ps(wc[q]);
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[q][v] = _mm512_fmadd_ps(wq, s[v], acc[q][v]);
      }
    }
#pragma GCC unroll 16
    for (int q = 0; q < R; ++q)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) _mm512_store_ps(out[q] + 16 * v, acc[q][v]);
    return;
  }
#endif
  T acc[R][L];
  for (int q = 0; q < R; ++q)
    for (int t = 0; t < L; ++t) acc[q][t] = T(0);
  for (int64_t c = 0; c < ncols; ++c) {
    const T* s = src[c];
    for (int q = 0; q < R; ++q) {
      const T wq = w[q + c * cs];
      for (int t = 0; t < L; ++t) acc[q][t] += wq * s[t];
    }
  }
  for (int q = 0; q < R; ++q)
    for (int t = 0; t < L; ++t) out[q][t] = acc[q][t];
}

// out[j] = sum_c W(j, c) src[c] for j in [0, nout), W(j, c) = w[j + c * nout]; 8/4/2/1 output
// rows at a time.
template <typename T, int L>
inline void small_matmul(const T* w, int64_t nout, int64_t ncols, const T* const* src,
                         T* const* out) {
  constexpr int kWide = (std::is_same_v<T, float> && L >= 32) ? 4 : 8;
  int64_t j = 0;
  for (; j + kWide <= nout; j += kWide)
    accumulate_rows<T, L, kWide>(w + j, nout, ncols, src, out + j);
  for (; j + 2 <= nout; j += 2) accumulate_rows<T, L, 2>(w + j, nout, ncols, src, out + j);
  for (; j < nout; ++j) accumulate_rows<T, L, 1>(w + j, nout, ncols, src, out + j);
}

// Each block transposed, (nblocks, cols, rows): the layout small_matmul wants for B x.
template <typename T>
std::vector<T> transpose_blocks(const BlockDiagShape& f, const T* B) {
  std::vector<T> t(static_cast<size_t>(f.numel()));
  for (int64_t i = 0; i < f.nblocks; ++i)
    for (int64_t r = 0; r < f.block_rows; ++r)
      for (int64_t c = 0; c < f.block_cols; ++c)
        t[i * f.numel() / f.nblocks + c * f.block_rows + r] = B[(i * f.block_rows + r) * f.block_cols + c];
  return t;
}

// Row pointers base + index[k] * L (index null: contiguous rows).
template <typename T, int L, typename P>
inline void row_pointers(P base, const int64_t* index, int64_t first, int64_t count, P* rows) {
  for (int64_t k = 0; k < count; ++k) rows[k] = base + (index ? index[first + k] : first + k) * L;
}

// Forward through one block-diagonal factor: out = B · (P in), P given by its gather map, with
// Bt the transposed blocks (transpose_blocks). Output row j goes to out + out_index[j] * L
// (out_index null: row j), which folds the next permutation into the write.
template <typename T, int L>
void factor_forward(const BlockDiagShape& f, const T* Bt, const int64_t* sigma, const T* in,
                    T* out, const int64_t* out_index, const T** src, T** dst) {
  const int64_t br = f.block_rows, bc = f.block_cols;
  for (int64_t i = 0; i < f.nblocks; ++i) {
    row_pointers<const T*, L>(in, sigma, i * bc, bc, src);
    row_pointers<T*, L>(out, out_index, i * br, br, dst);
    small_matmul<T, L>(Bt + i * br * bc, br, bc, src, dst);
  }
}

// Pairwise tree sum of L lanes: deterministic, and each level vectorises.
template <typename T, int L>
inline T lane_sum(T* v) {
  for (int h = L / 2; h >= 1; h /= 2)
    for (int t = 0; t < h; ++t) v[t] += v[t + h];
  return v[0];
}

// gBi (br x bc) += G · S^T for one block over the L lanes, G rows `grows`, S rows `src`: outer
// products when the block has a multiple of 16 columns, 4 x 4 tiles of dot products when both
// sides are multiples of 4, grouped 16-way dot products otherwise, scalar lane sums for what is left.
template <typename T, int L>
void accumulate_block_grad(const T* const* grows, const T* const* src, int64_t br, int64_t bc, T* gBi,
                           [[maybe_unused]] T* scratch) {
  int64_t done = 0;  // flattened pairs r * bc + c already accumulated
#if GSOFT_AVX512
  if constexpr (std::is_same_v<T, float> && L % 16 == 0) {
    if (bc % 16 == 0) {
      block_grad_outer<L>(grows, src, br, bc, gBi, scratch);
      return;
    }
    if (L == 16 && bc == 8 && br % 2 == 0) {
      block_grad_pairs8(grows, src, br, gBi);
      return;
    }
    if (br % 4 == 0 && bc % 4 == 0) {
      block_grad_4x4<L>(grows, src, br, bc, gBi);
      return;
    }
    done = block_grad_dot16<L>(grows, src, br, bc, gBi);
  }
#endif
  for (int64_t r = done / bc; r < br; ++r) {
    const T* g = grows[r];
    for (int64_t c = (r == done / bc ? done % bc : 0); c < bc; ++c) {
      T prod[L];
      const T* sc = src[c];
      for (int t = 0; t < L; ++t) prod[t] = g[t] * sc[t];
      gBi[r * bc + c] += lane_sum<T, L>(prod);
    }
  }
}

// Backward through one factor. Row j of the output gradient is g_out + gout_index[j] * L
// (gout_index null: row j); scratch holds L x block_cols values. Accumulates
// gB += g_out_block · in_block^T and, when g_in is not null, scatters B^T g_out to the unpermuted
// input rows: g_in = P^T (B^T g_out).
template <typename T, int L>
void factor_backward(const BlockDiagShape& f, const T* B, const int64_t* sigma, const T* in,
                     const T* g_out, const int64_t* gout_index, T* gB, T* g_in, const T** src,
                     const T** grows, T** dst, T* scratch) {
  const int64_t br = f.block_rows, bc = f.block_cols;
  for (int64_t i = 0; i < f.nblocks; ++i) {
    row_pointers<const T*, L>(in, sigma, i * bc, bc, src);
    row_pointers<const T*, L>(g_out, gout_index, i * br, br, grows);
    accumulate_block_grad<T, L>(grows, src, br, bc, gB + i * br * bc, scratch);
    if (g_in) {
      row_pointers<T*, L>(g_in, sigma, i * bc, bc, dst);
      small_matmul<T, L>(B + i * br * bc, bc, br, grows, dst);
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
  const int64_t bd = max_block_dim(plan);
  std::vector<std::vector<T>> bt;
  for (int64_t s = 0; s < m; ++s) bt.push_back(transpose_blocks(plan.factors[s], blocks[s]));
  struct Scratch {
    std::unique_ptr<T[], FreeDeleter> a, b;
    std::vector<const T*> src;
    std::vector<T*> dst;
  };
  // Items of a few tiles each: small enough to balance, large enough to amortise the counter.
  const int64_t per_item = std::max<int64_t>(1, ntiles / (16 * std::max(1, at::get_num_threads())));
  const int64_t items = (ntiles + per_item - 1) / per_item;
  for_each_item(
      items,
      [&] {
        return Scratch{aligned_buffer<T>(width * L), aligned_buffer<T>(width * L),
                       std::vector<const T*>(static_cast<size_t>(bd)), std::vector<T*>(static_cast<size_t>(bd))};
      },
      [&](int64_t item, Scratch& w) {
        for (int64_t tile = item * per_item; tile < std::min(ntiles, (item + 1) * per_item); ++tile) {
          const int64_t r0 = tile * L;
          const int64_t tt = std::min<int64_t>(L, rows - r0);
          load_tile<T, L>(x + r0 * plan.in_features, plan.in_features, tt, w.a.get());
          T* cur = w.a.get();
          T* nxt = w.b.get();
          for (int64_t s = 0; s < m; ++s) {
            // The last factor writes straight into output order: y[i] = z[sigma_m(i)].
            const int64_t* out_index = s + 1 == m ? plan.out_inverse.data() : nullptr;
            factor_forward<T, L>(plan.factors[s], bt[s].data(), plan.sigma[s], cur, nxt, out_index, w.src.data(),
                                 w.dst.data());
            std::swap(cur, nxt);
          }
          store_tile<T, L>(cur, plan.out_features, tt, y + r0 * plan.out_features);
        }
      });
}

template <typename T, int L>
void backward_impl(const ChainPlan& plan, const T* const* blocks, const T* x, const T* gy, T* gx,
                   T* const* grad_blocks, int64_t rows) {
  const int64_t ntiles = (rows + L - 1) / L;
  const int64_t width = max_width(plan);
  const int64_t m = static_cast<int64_t>(plan.factors.size());
  const int64_t bd = max_block_dim(plan);
  int64_t block_numel = 0;
  for (const auto& f : plan.factors) block_numel += f.numel();
  const int64_t nchunks = backward_chunks(ntiles, block_numel * static_cast<int64_t>(sizeof(T)));
  std::vector<std::vector<T>> partial(static_cast<size_t>(nchunks * m));
  std::vector<std::vector<T>> bt;
  for (int64_t s = 0; s < m; ++s) bt.push_back(transpose_blocks(plan.factors[s], blocks[s]));
  struct Scratch {
    std::vector<std::unique_ptr<T[], FreeDeleter>> acts;  // acts[s]: factor s's input (gathered by index)
    std::unique_ptr<T[], FreeDeleter> g_a, g_b, scratch;
    std::vector<const T*> src, grows;
    std::vector<T*> dst;
  };
  for_each_item(
      nchunks,
      [&] {
        Scratch w;
        for (int64_t s = 0; s < m; ++s) w.acts.push_back(aligned_buffer<T>(width * L));
        w.g_a = aligned_buffer<T>(width * L);
        w.g_b = aligned_buffer<T>(width * L);
        w.scratch = aligned_buffer<T>(bd * L);
        w.src.resize(static_cast<size_t>(bd));
        w.grows.resize(static_cast<size_t>(bd));
        w.dst.resize(static_cast<size_t>(bd));
        return w;
      },
      [&](int64_t chunk, Scratch& w) {
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
          load_tile<T, L>(x + r0 * plan.in_features, plan.in_features, tt, w.acts[0].get());
          for (int64_t s = 0; s + 1 < m; ++s)
            factor_forward<T, L>(plan.factors[s], bt[s].data(), plan.sigma[s], w.acts[s].get(), w.acts[s + 1].get(),
                                 nullptr, w.src.data(), w.dst.data());
          load_tile<T, L>(gy + r0 * plan.out_features, plan.out_features, tt, w.g_a.get());
          T* gcur = w.g_a.get();
          T* gnext = w.g_b.get();
          for (int64_t s = m - 1; s >= 0; --s) {
            // y = P_m z, so the last factor's output gradient row j is gy row sigma_m^-1(j).
            const int64_t* gout_index = s + 1 == m ? plan.out_inverse.data() : nullptr;
            const bool need_in = s > 0 || gx != nullptr;
            factor_backward<T, L>(plan.factors[s], blocks[s], plan.sigma[s], w.acts[s].get(), gcur, gout_index, gB[s],
                                  need_in ? gnext : nullptr, w.src.data(), w.grows.data(), w.dst.data(),
                                  w.scratch.get());
            std::swap(gcur, gnext);
          }
          if (gx) store_tile<T, L>(gcur, plan.in_features, tt, gx + r0 * plan.in_features);
        }
      });
  for (int64_t s = 0; s < m; ++s) {
    if (!grad_blocks[s]) continue;
    const int64_t count = plan.factors[s].numel();
    T* out = grad_blocks[s];
    // Each element sums its chunks in chunk order. Small sums stay on this thread: a thread-team
    // start costs more than they do, and on a busy machine it can wait for a time slice.
    at::parallel_for(0, count, std::max<int64_t>(1, (int64_t{1} << 18) / nchunks), [&](int64_t k0, int64_t k1) {
      std::fill(out + k0, out + k1, T(0));
      for (int64_t c = 0; c < nchunks; ++c) {
        const T* p = partial[static_cast<size_t>(c * m + s)].data();
        for (int64_t k = k0; k < k1; ++k) out[k] += p[k];
      }
    });
  }
}

}  // namespace

template <typename T>
void chain_forward(const ChainPlan& plan, const T* const* blocks, const T* x, T* y,
                   int64_t rows) {
  if (rows <= 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (plan.row_block && row_kernels_active()) return row_forward(plan, blocks, x, y, rows);
  }
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
  if constexpr (std::is_same_v<T, float>) {
    if (plan.row_block && row_kernels_active()) return row_backward(plan, blocks, x, gy, gx, grad_blocks, rows);
  }
  // Tiles of 16 float rows, as in the forward, so that the backward's tile buffers stay in L2.
  // Tiles of 64 rows halve the block gradients' lane reductions, but measured slower in process
  // CPU time: in every alternating round at b = 32 and 64, in two of five at b = 8
  // (docs/benchmarks.md, session 10).
  backward_impl<T, 64 / sizeof(T)>(plan, blocks, x, gy, gx, grad_blocks, rows);
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
