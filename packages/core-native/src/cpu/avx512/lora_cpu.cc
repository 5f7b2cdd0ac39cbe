// Fused LoRA linear on the blocked GEMM. The low-rank term rides along the base product as an
// extra reduction segment ([X, s·XA_g]·[W_g, B_g]ᵀ), so Y is written once and B·A never exists;
// when the group width is a multiple of 64 all groups go through one GEMM (a grouped segment:
// the columns of group g read XA's columns of group g). Forward caches XA (f32); the backward
// regenerates the dropout mask from the seed once, as bits, and uses it for dA (drop(X)) and for
// dX (the mask applied to the low-rank product inside the GEMM).
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "../thread_pool.h"
#include "../weight_scalar.h"
#include "cpu_kernels.h"
#include "gemm.h"
#include "par.h"
#include "vmath.h"

namespace lora::ops::cpu {

namespace {
Src f32_src(const float* data, int64_t ld, bool k_major, float scale = 1.f) {
  Src s;
  s.dtype = DType::F32;
  s.data = data;
  s.ld = ld;
  s.k_major = k_major;
  s.scale = scale;
  return s;
}

Mat col_slice(const Mat& m, int64_t c0) {
  Mat r = m;
  r.data = static_cast<const char*>(m.data) + c0 * (m.dtype == DType::F32 ? 4 : 2);
  return r;
}

// Reused per calling thread, so the backward's temporaries do not page-fault on every call.
template <typename T>
T* reuse(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
thread_local std::vector<float> t_dxa, t_tmp, t_part_a;
thread_local std::vector<uint64_t> t_mask;
thread_local std::vector<uint32_t> t_bt;
thread_local std::vector<uint16_t> t_dxa16;

// Thin products by dot products along the reduction: out[i*ldo + j] = Σ_p <a_i, bt_j> over kk bf16
// pairs, for RM rows of A (pair rows, stride lda) and RJ rows of bt (stride ldb). For outputs a
// few columns wide (dY·B of a rank-8 branch), where an outer-product tile would sit mostly idle.
template <int RM, int RJ>
void dot_tile(int64_t kk, const uint32_t* a, int64_t lda, const uint32_t* bt, int64_t ldb, float* out, int64_t ldo) {
  __m512 acc[RM][RJ];
#pragma GCC unroll 8
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < RJ; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kk; p += 16) {
    const __mmask16 k = tail_mask16(kk - p);
    __m512i av[RM];
#pragma GCC unroll 8
    for (int i = 0; i < RM; ++i) av[i] = _mm512_maskz_loadu_epi32(k, a + i * lda + p);
#pragma GCC unroll 8
    for (int j = 0; j < RJ; ++j) {
      const __m512i bv = _mm512_maskz_loadu_epi32(k, bt + j * ldb + p);
#pragma GCC unroll 8
      for (int i = 0; i < RM; ++i)
        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], reinterpret_cast<const __m512bh&>(av[i]), reinterpret_cast<const __m512bh&>(bv));
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < RJ; ++j) out[i * ldo + j] = _mm512_reduce_add_ps(acc[i][j]);
}

using DotTile = void (*)(int64_t, const uint32_t*, int64_t, const uint32_t*, int64_t, float*, int64_t);
constexpr int kDotRows = 3, kDotCols = 8;
struct DotTable {
  DotTile t[kDotRows][kDotCols];
  DotTable() {
    fill<1>();
    fill<2>();
    fill<3>();
  }
  template <int RM> void fill() {
    t[RM - 1][0] = &dot_tile<RM, 1>;
    t[RM - 1][1] = &dot_tile<RM, 2>;
    t[RM - 1][2] = &dot_tile<RM, 3>;
    t[RM - 1][3] = &dot_tile<RM, 4>;
    t[RM - 1][4] = &dot_tile<RM, 5>;
    t[RM - 1][5] = &dot_tile<RM, 6>;
    t[RM - 1][6] = &dot_tile<RM, 7>;
    t[RM - 1][7] = &dot_tile<RM, 8>;
  }
};
const DotTable kDot;

// Coefficient pairs for rank2: out[q*ldo + c] = (v(m0 + 2q, c), v(m0 + 2q + 1, c)) as bf16 pairs for
// c < cols, 0 in columns [cols, ldo) and for the row past m1 (v returns a bf16 value's bits).
template <typename V>
void pair_rows_of(int64_t m0, int64_t m1, int64_t cols, int64_t ldo, V&& v, uint32_t* out) {
  for (int64_t m = m0, q = 0; m < m1; m += 2, ++q)
    for (int64_t c = 0; c < ldo; ++c) {
      const uint32_t lo = c < cols ? v(m, c) : 0u;
      const uint32_t hi = c < cols && m + 1 < m1 ? v(m + 1, c) : 0u;
      out[q * ldo + c] = lo | (hi << 16);
    }
}

// Rank-2 updates of a partial product from one block of rows of a bf16 matrix R (row stride ld):
//   part[j*ldp + c] += Σ_q coef[q*ldc + j] · (R[m0 + 2q][c], R[m0 + 2q + 1][c])   for j < jn, c < ncols
// where coef holds bf16 pairs (the other factor's two rows) and R's two rows are interleaved into
// bf16 pairs 32 columns at a time by two vpermt2w (row m1 past the block reads as 0). With mask,
// R's element (m, c) reads as 0 where bit (m·mask_ld + c) is clear - one masked load (a dropout's
// keep scale then belongs in coef). JN accumulator rows × 32 columns in registers; coef must be
// readable for JN columns (padding past jn is computed, not stored).
// How far ahead (columns) rank2_update prefetches R's rows: when R is X, its rows come from
// memory, 30-odd rows at once - more streams than the hardware prefetcher follows.
constexpr int64_t kPrefetchCols = 128;

template <int JN>
void rank2_update(const uint16_t* R, int64_t ld, int64_t m0, int64_t m1, int64_t ncols, const uint64_t* mask, int64_t mask_ld,
                  const uint32_t* coef, int64_t ldc, int64_t jn, float* part, int64_t ldp) {
  alignas(64) static const uint16_t kLo[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39, 8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t kHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55, 24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i ilo = _mm512_load_si512(kLo), ihi = _mm512_load_si512(kHi);
  // 32 elements of row m from column c (k32: the valid ones), dropped ones read as 0.
  auto row32 = [&](int64_t m, int64_t c, int64_t nc, __mmask32 k32) {
    if (!mask) return _mm512_maskz_loadu_epi16(k32, R + m * ld + c);
    return _mm512_maskz_loadu_epi16(k32 & bits32(mask, m * mask_ld + c, nc), R + m * ld + c);
  };
  for (int64_t c = 0; c < ncols; c += 32) {
    const int64_t nc = std::min<int64_t>(32, ncols - c);
    const __mmask32 k32 = nc >= 32 ? ~__mmask32(0) : (__mmask32(1) << nc) - 1;
    const __mmask16 k0 = tail_mask16(nc), k1 = tail_mask16(nc - 16);
    if (c + kPrefetchCols < ncols)
      for (int64_t m = m0; m < m1; ++m) _mm_prefetch(reinterpret_cast<const char*>(R + m * ld + c + kPrefetchCols), _MM_HINT_T0);
    __m512 acc[JN][2];
#pragma GCC unroll 16
    for (int j = 0; j < JN; ++j) {
      acc[j][0] = j < jn ? _mm512_maskz_loadu_ps(k0, part + j * ldp + c) : _mm512_setzero_ps();
      acc[j][1] = j < jn ? _mm512_maskz_loadu_ps(k1, part + j * ldp + c + 16) : _mm512_setzero_ps();
    }
    for (int64_t m = m0, q = 0; m < m1; m += 2, ++q) {
      const __m512i a = row32(m, c, nc, k32);
      const __m512i b = m + 1 < m1 ? row32(m + 1, c, nc, k32) : _mm512_setzero_si512();
      const __m512i v0 = _mm512_permutex2var_epi16(a, ilo, b), v1 = _mm512_permutex2var_epi16(a, ihi, b);
      const uint32_t* cq = coef + q * ldc;
#pragma GCC unroll 16
      for (int j = 0; j < JN; ++j) {
        const __m512i bc = _mm512_set1_epi32(static_cast<int>(cq[j]));
        acc[j][0] = _mm512_dpbf16_ps(acc[j][0], reinterpret_cast<const __m512bh&>(bc), reinterpret_cast<const __m512bh&>(v0));
        acc[j][1] = _mm512_dpbf16_ps(acc[j][1], reinterpret_cast<const __m512bh&>(bc), reinterpret_cast<const __m512bh&>(v1));
      }
    }
#pragma GCC unroll 16
    for (int j = 0; j < JN; ++j) {
      if (j >= jn) break;
      _mm512_mask_storeu_ps(part + j * ldp + c, k0, acc[j][0]);
      if (nc > 16) _mm512_mask_storeu_ps(part + j * ldp + c + 16, k1, acc[j][1]);
    }
  }
}

// rank2_update over jn rows of the partial in chunks the registers hold (coef padded to 8).
void rank2(const uint16_t* R, int64_t ld, int64_t m0, int64_t m1, int64_t ncols, const uint64_t* mask, int64_t mask_ld,
           const uint32_t* coef, int64_t ldc, int64_t jn, float* part, int64_t ldp) {
  for (int64_t j0 = 0; j0 < jn; j0 += 8) {
    const int64_t n = std::min<int64_t>(8, jn - j0);
    if (n > 4) rank2_update<8>(R, ld, m0, m1, ncols, mask, mask_ld, coef + j0, ldc, n, part + j0 * ldp, ldp);
    else rank2_update<4>(R, ld, m0, m1, ncols, mask, mask_ld, coef + j0, ldc, n, part + j0 * ldp, ldp);
  }
}

// dXA and dB of a small-rank backward (bf16 dY with even N and row stride) from one pass over dY,
// block of rows by block of rows - run inside the dX GEMM (as its hook, while the block's dY rows
// are in cache from the base product) or on its own:
//   dXA[m, g*r + j] = s·Σ_n dY[m][g*N + n]·B[g*N + n][j]   (dot products along dY's rows, with
//                                                          B_g transposed to bf16 pairs once)
//   dB_g[n][j]     += s·Σ_m dY[m][g*N + n]·XA[m][g*r + j]  (if db: rank2 updates of a per-thread
//                     [r][N] partial, 32 columns at a time; pairs of rows of dY interleaved into
//                     bf16 pairs, s·XA rounded to bf16 like a GEMM operand)
// dXA is written as f32 (dxa) or, for the dX GEMM's low-rank segment, as bf16 (dxa16); with
// dxa16, dA can ride along too (carry_da):
//   dA[j][k]      += Σ_m dXA[m][j]·drop(X)[m][k]          (rank-2 updates of a per-thread [GR][K]
//                     partial from the block's bf16 dXA rows and X rows, the dropout mask applied)
struct SmallRankBwd {
  const LoraBwd& p;
  int64_t GR, kk;
  int threads;
  uint32_t* bt;
  float* part = nullptr;
  float* dxa = nullptr;
  uint16_t* dxa16 = nullptr;
  // dA carried too (with dxa16): per-thread partials [GR][K], X's dropout mask bits and keep.
  float* part_a = nullptr;
  const uint64_t* mask = nullptr;
  float keep = 1.f;

  SmallRankBwd(const Ctx& ctx, const LoraBwd& pp) : p(pp), GR(pp.G * pp.r), kk(pp.N / 2), threads(ctx.pool ? ctx.pool->size() : 1) {
    bt = reuse(t_bt, static_cast<size_t>(GR * kk));
    parallel_range(ctx, GR, 4, [&](int64_t b, int64_t e) {
      for (int64_t gj = b; gj < e; ++gj) {
        const int64_t g = gj / p.r, j = gj % p.r;
        const float* bg = p.b + g * p.N * p.r;
        for (int64_t q = 0; q < kk; ++q)
          bt[gj * kk + q] = static_cast<uint32_t>(f32_to_bf16(p.scale * bg[(2 * q) * p.r + j])) |
                            (static_cast<uint32_t>(f32_to_bf16(p.scale * bg[(2 * q + 1) * p.r + j])) << 16);
      }
    });
    if (p.db) {
      const size_t n = static_cast<size_t>(threads) * static_cast<size_t>(GR * p.N);
      part = reuse(t_tmp, n);
      std::fill(part, part + n, 0.f);
    }
  }

  void rows(int64_t m0, int64_t m1, int thread) const {
    const uint32_t* dy = static_cast<const uint32_t*>(p.dy.data);
    const uint16_t* dyh = static_cast<const uint16_t*>(p.dy.data);
    const int64_t lda = p.dy.ld / 2;
    thread_local std::vector<float> out_buf;
    float* out = dxa16 ? reuse(out_buf, static_cast<size_t>(kDotRows * GR)) : nullptr;
    // Under dropout, dA's coefficients are keep·dXA, rounded once from f32 (rank2 zeroes the
    // dropped X elements; the keep scale moves to this side).
    const bool scaled = part_a && mask && keep != 1.f;
    thread_local std::vector<uint16_t> dxk_buf;
    uint16_t* dxk = scaled ? reuse(dxk_buf, static_cast<size_t>((m1 - m0) * GR)) : nullptr;
    for (int64_t m = m0; m < m1; m += kDotRows) {
      const int rm = static_cast<int>(std::min<int64_t>(kDotRows, m1 - m));
      float* o = dxa16 ? out : dxa + m * GR;
      for (int64_t g = 0; g < p.G; ++g)
        for (int64_t j = 0; j < p.r; j += kDotCols) {
          const int rj = static_cast<int>(std::min<int64_t>(kDotCols, p.r - j));
          kDot.t[rm - 1][rj - 1](kk, dy + m * lda + g * kk, lda, bt + (g * p.r + j) * kk, kk, o + g * p.r + j, GR);
        }
      if (dxa16)
        for (int64_t i = 0; i < rm * GR; ++i) dxa16[m * GR + i] = f32_to_bf16(out[i]);
      if (dxk)
        for (int64_t i = 0; i < rm * GR; ++i) dxk[(m - m0) * GR + i] = f32_to_bf16(keep * out[i]);
    }
    if (part_a) {
      // dA_partial += dXA[m0:m1]ᵀ · drop(X[m0:m1]): dXA rows (the bf16 values the dX product
      // uses, or keep·dXA) in bf16 pairs of consecutive rows, columns padded to 8 with zeros.
      const int64_t GRp = (GR + 7) / 8 * 8, npairs = (m1 - m0 + 1) / 2;
      thread_local std::vector<uint32_t> dxp_buf;
      uint32_t* dxp = reuse(dxp_buf, static_cast<size_t>(npairs * GRp));
      pair_rows_of(m0, m1, GR, GRp, [&](int64_t m, int64_t c) -> uint32_t { return dxk ? dxk[(m - m0) * GR + c] : dxa16[m * GR + c]; }, dxp);
      float* ta = part_a + static_cast<size_t>(thread) * static_cast<size_t>(GR * p.K);
      rank2(static_cast<const uint16_t*>(p.x.data), p.x.ld, m0, m1, p.K, mask, p.K, dxp, GRp, GR, ta, p.K);
    }
    if (!part) return;
    float* tp = part + static_cast<size_t>(thread) * static_cast<size_t>(GR * p.N);
    // s·XA of these rows as bf16 pairs of consecutive rows: xs[(m - m0)/2][g*r + j].
    // (Rows GRp = GR rounded up to 8 wide, zero padded: rank2 reads 8 coefficient columns at a time.)
    const int64_t pairs = (m1 - m0 + 1) / 2, GRp = (GR + 7) / 8 * 8;
    thread_local std::vector<uint32_t> xs_buf;
    uint32_t* xs = reuse(xs_buf, static_cast<size_t>(pairs * GRp + 8));  // + 8: a group's window may reach past a row
    pair_rows_of(m0, m1, GR, GRp, [&](int64_t m, int64_t c) -> uint32_t { return f32_to_bf16(p.scale * p.xa[m * GR + c]); }, xs);
    for (int64_t g = 0; g < p.G; ++g)
      rank2(dyh + g * p.N, p.dy.ld, m0, m1, p.N, nullptr, 0, xs + g * p.r, GRp, p.r, tp + g * p.r * p.N, p.N);
  }

  // Runs rows() over all of M on the pool (when no GEMM carries it).
  void run_alone(const Ctx& ctx) const {
    constexpr int64_t MB = 48;  // 48 x 3072 bf16 = 288 KiB of dY
    const int64_t blocks = (p.M + MB - 1) / MB;
    // One partial per slot (see for_blocks_by_slot): deterministic sums.
    for_blocks_by_slot(ctx, blocks, [&](int64_t b, int slot) { rows(b * MB, std::min(p.M, (b + 1) * MB), slot); });
  }

  // Carries dA as well (dxa16 mode): zeroed per-thread partials [GR][K].
  void carry_da(const uint64_t* m, float k) {
    const size_t n = static_cast<size_t>(threads) * static_cast<size_t>(GR * p.K);
    part_a = reuse(t_part_a, n);
    std::fill(part_a, part_a + n, 0.f);
    mask = m;
    keep = k;
  }

  // dB_g (and dA when carried) += the partials.
  void finish(const Ctx& ctx) const {
    if (part_a) {
      parallel_range(ctx, GR * p.K, 4096, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          float sum = 0.f;
          for (int t = 0; t < threads; ++t) sum += part_a[static_cast<size_t>(t) * static_cast<size_t>(GR * p.K) + i];
          p.da[i] += sum;
        }
      });
    }
    if (!part) return;
    parallel_range(ctx, p.G * p.N, 256, [&](int64_t b, int64_t e) {
      for (int64_t gn = b; gn < e; ++gn) {
        const int64_t g = gn / p.N, n = gn % p.N;
        for (int64_t j = 0; j < p.r; ++j) {
          float sum = 0.f;
          for (int t = 0; t < threads; ++t) sum += part[static_cast<size_t>(t) * static_cast<size_t>(GR * p.N) + (g * p.r + j) * p.N + n];
          p.db[gn * p.r + j] += sum;
        }
      }
    });
  }
};

// The keep bits of n dropout elements (offset included) in the reused t_mask, plus a zeroed
// padding word: made in parallel, 16 Philox counters at a time, once per call (the GEMM then
// reads bits instead of evaluating Philox per packed element).
uint64_t* drop_mask(const Ctx& ctx, const Dropout& d, int64_t n) {
  const int64_t words = (n + 63) / 64;
  uint64_t* mask = reuse(t_mask, static_cast<size_t>(words + 1));
  parallel_range(ctx, words, 256, [&](int64_t b, int64_t e) {
    const int64_t len = std::min(n, e * 64) - b * 64;
    // Chunks start on word boundaries; each makes its words in a buffer with dropout_bits'
    // padding word, then copies its own words only.
    std::vector<uint64_t> tmp(static_cast<size_t>(e - b + 1));
    dropout_bits(d, static_cast<uint64_t>(b * 64), len, tmp.data());
    std::copy(tmp.begin(), tmp.begin() + (e - b), mask + b);
  });
  mask[words] = 0;
  return mask;
}

}  // namespace

void lora_fwd(const Ctx& ctx, const LoraFwd& p) {
  const int64_t GR = p.G * p.r;
  // XA = drop(X)·Aᵀ (all groups in one product): X packed with its dropped elements zeroed, the
  // keep factor 1/(1-p) on A's side (A is rounded to bf16 once either way).
  Src xs = mat_src(p.x, false);
  xs.drop_ld = p.K;
  float a_scale = 1.f;
  if (p.drop.active()) {
    xs.mask_bits = drop_mask(ctx, p.drop, p.M * p.K);
    a_scale = keep_scale(p.drop);
  }
  gemm(ctx, p.M, GR, {Segment{xs, f32_src(p.a, p.K, false, a_scale), p.K}}, p.xa, GR, false, nullptr, precision_for(p.x.dtype, DType::F32));
  const Precision prec = precision_for(p.x.dtype, p.w.dtype);
  // Y's columns [col0, col0 + N): f32 in place, bf16 through the GEMM's epilogue.
  auto product = [&](int64_t N, const std::vector<Segment>& segs, int64_t col0, const float* bias) {
    if (p.y.dtype == DType::F32) {
      gemm(ctx, p.M, N, segs, static_cast<float*>(p.y.data) + col0, p.y.ld, false, bias, prec);
      return;
    }
    Epilogue e;
    e.out = p.y;
    e.out.data = static_cast<uint16_t*>(p.y.data) + col0;
    gemm(ctx, p.M, N, segs, nullptr, 0, false, bias, prec, nullptr, &e);
  };
  const bool grouped = p.G > 1 && p.N % 64 == 0 && (prec == Precision::F32 || p.r % 2 == 0);
  if (grouped) {
    Segment low{f32_src(p.xa, GR, false, p.scale), f32_src(p.b, p.r, false), p.r};
    low.group_cols = p.N;
    product(p.G * p.N, {Segment{mat_src(p.x, false), weight_src(p.w, false), p.K}, low}, 0, p.bias);
    return;
  }
  for (int64_t g = 0; g < p.G; ++g) {
    const Segment base{mat_src(p.x, false), weight_src(weight_rows(p.w, g * p.N, p.N), false), p.K};
    const Segment low{f32_src(p.xa + g * p.r, GR, false, p.scale), f32_src(p.b + g * p.N * p.r, p.r, false), p.r};
    product(p.N, {base, low}, g * p.N, p.bias ? p.bias + g * p.N : nullptr);
  }
}

thread_local std::vector<float> t_seg_xa;
thread_local std::vector<uint32_t> t_seg_apack, t_seg_rowpairs;

// XA_i = X_i·A_iᵀ of one segment on the calling thread, with the GEMM's arithmetic for X·Aᵀ
// (lora_fwd's first product), so that XA is bit-identical to it: bf16 x - A rounded to bf16 pairs
// (RNE, vcvtneps2bf16), one vdpbf16ps per k-pair per output, in k order; f32 x - one FMA per k;
// over several k-blocks (gemm_kblock) each block's sum is stored and the next added to it. A
// serving step's XA is a few thousand MACs per row: one gemm() per segment spent most of its time
// waking the thread pool (measured: four segments of 2 rows, q/k/v of opt-125m, bf16: 390-685 us
// with a gemm per segment, against ~160 us for one).
void segment_xa(const LoraSegments& p, const LoraSegment& sg, float* xa) {
  const int64_t GR = p.G * sg.r, K = p.K;
  const bool bf = p.x.dtype == DType::BF16;
  const int64_t kk = bf ? (K + 1) / 2 : K, kb = gemm_kblock(bf ? Precision::BF16 : Precision::F32);
  const int64_t GRp = (GR + 15) / 16 * 16;
  // A as [kk][GRp] operands: bf16 pairs (A[j][2q], A[j][2q+1]) or f32 A[j][k]; zero past GR and K.
  // Each row is rounded as the GEMM's packing rounds it (to_pairs: the vector instruction over whole
  // blocks of 16 pairs, the scalar rule for the rest), from contiguous loads, then transposed.
  uint32_t* rp = reuse(t_seg_rowpairs, static_cast<size_t>(GR * kk));
  const int64_t vector_pairs = kk / 16 * 16;
  for (int64_t j = 0; j < GR; ++j) {
    const float* row = sg.a + j * K;
    uint32_t* out = rp + j * kk;
    if (!bf) {
      std::memcpy(out, row, static_cast<size_t>(K) * 4);
      continue;
    }
    int64_t q = 0;
    for (; q < vector_pairs; q += 16) {
      const __m512 lo = _mm512_maskz_loadu_ps(tail_mask16(K - 2 * q), row + 2 * q);
      const __m512 hi = _mm512_maskz_loadu_ps(tail_mask16(K - 2 * q - 16), row + 2 * q + 16);
      const __m512bh v = _mm512_cvtne2ps_pbh(hi, lo);
      _mm512_storeu_si512(out + q, reinterpret_cast<const __m512i&>(v));
    }
    for (; q < kk; ++q)
      out[q] = static_cast<uint32_t>(f32_to_bf16(row[2 * q])) | (2 * q + 1 < K ? static_cast<uint32_t>(f32_to_bf16(row[2 * q + 1])) << 16 : 0u);
  }
  uint32_t* ap = reuse(t_seg_apack, static_cast<size_t>(kk * GRp));
  for (int64_t q = 0; q < kk; ++q) {
    uint32_t* d = ap + q * GRp;
    for (int64_t j = 0; j < GR; ++j) d[j] = rp[j * kk + q];
    for (int64_t j = GR; j < GRp; ++j) d[j] = 0;
  }
  for (int64_t m = 0; m < sg.len; ++m) {
    const char* xrow = static_cast<const char*>(p.x.data) + static_cast<size_t>((sg.start + m) * p.x.ld) * (bf ? 2 : 4);
    for (int64_t j0 = 0; j0 < GR; j0 += 16) {
      const __mmask16 km = tail_mask16(GR - j0);
      __m512 c = _mm512_setzero_ps();
      for (int64_t q0 = 0; q0 < kk; q0 += kb) {
        __m512 acc = _mm512_setzero_ps();
        for (int64_t q = q0; q < std::min(kk, q0 + kb); ++q) {
          const __m512i bv = _mm512_loadu_si512(ap + q * GRp + j0);
          if (bf) {
            const uint16_t* xh = reinterpret_cast<const uint16_t*>(xrow);
            const uint32_t pair = static_cast<uint32_t>(xh[2 * q]) | (2 * q + 1 < K ? static_cast<uint32_t>(xh[2 * q + 1]) << 16 : 0u);
            const __m512i av = _mm512_set1_epi32(static_cast<int>(pair));
            acc = _mm512_dpbf16_ps(acc, reinterpret_cast<const __m512bh&>(av), reinterpret_cast<const __m512bh&>(bv));
          } else {
            float xv;
            std::memcpy(&xv, xrow + q * 4, 4);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(xv), _mm512_castsi512_ps(bv), acc);
          }
        }
        c = q0 == 0 ? acc : _mm512_add_ps(acc, c);
      }
      _mm512_mask_storeu_ps(xa + m * GR + j0, km, c);
    }
  }
}

// One base GEMM over every row whose row blocks of segment i finish with [s_i·XA_i, B_i] as the
// tail of their last k-block - the very tail lora_fwd gives them (same bf16 rounding of s·XA and
// B, same accumulators, bias after), so each row's result is lora_fwd's for that row, bit for bit.
void lora_segments(const Ctx& ctx, const LoraSegments& p) {
  const Precision prec = precision_for(p.x.dtype, p.w.dtype);
  // XA_i = X_i·A_iᵀ per segment, as lora_fwd's first product (no dropout), into one scratch.
  std::vector<int64_t> at(static_cast<size_t>(p.nseg));
  int64_t total = 0;
  for (int64_t i = 0; i < p.nseg; ++i) at[static_cast<size_t>(i)] = total, total += p.segs[i].len * p.G * p.segs[i].r;
  float* xa = reuse(t_seg_xa, static_cast<size_t>(total + 1));
  for (int64_t i = 0; i < p.nseg; ++i) segment_xa(p, p.segs[i], xa + at[static_cast<size_t>(i)]);
  auto product = [&](int64_t N, const std::vector<Segment>& segs, int64_t col0, const float* bias) {
    if (p.y.dtype == DType::F32) {
      gemm(ctx, p.M, N, segs, static_cast<float*>(p.y.data) + col0, p.y.ld, false, bias, prec);
      return;
    }
    Epilogue e;
    e.out = p.y;
    e.out.data = static_cast<uint16_t*>(p.y.data) + col0;
    gemm(ctx, p.M, N, segs, nullptr, 0, false, bias, prec, nullptr, &e);
  };
  // lora_fwd's grouped form (all groups in one product) when every segment's would be; the
  // per-group form gives each element the same arithmetic, so a mix of ranks may use it for all.
  bool grouped = p.G > 1 && p.N % 64 == 0;
  for (int64_t i = 0; i < p.nseg; ++i) grouped = grouped && (prec == Precision::F32 || p.segs[i].r % 2 == 0);
  std::vector<RowPart> parts(static_cast<size_t>(p.nseg));
  auto make_parts = [&](int64_t g) {
    for (int64_t i = 0; i < p.nseg; ++i) {
      const LoraSegment& sg = p.segs[i];
      const int64_t GR = p.G * sg.r, col = grouped ? 0 : g * sg.r;
      RowPart& rp = parts[static_cast<size_t>(i)];
      rp = RowPart{sg.start, sg.start + sg.len, f32_src(xa + at[static_cast<size_t>(i)] + col, GR, false, sg.scale),
                   f32_src(sg.b + (grouped ? 0 : g * p.N * sg.r), sg.r, false), sg.r};
      rp.group_cols = grouped ? p.N : 0;
    }
  };
  Segment low{};
  low.K = 0;
  low.parts = &parts;
  if (grouped || p.G == 1) {
    make_parts(0);
    product(p.G * p.N, {Segment{mat_src(p.x, false), weight_src(p.w, false), p.K}, low}, 0, p.bias);
    return;
  }
  for (int64_t g = 0; g < p.G; ++g) {
    make_parts(g);
    product(p.N, {Segment{mat_src(p.x, false), weight_src(weight_rows(p.w, g * p.N, p.N), false), p.K}, low}, g * p.N, p.bias ? p.bias + g * p.N : nullptr);
  }
}

// Gradient contract: dA, dB accumulate (+=); dX overwrites (+= when accumulate).
void lora_bwd(const Ctx& ctx, const LoraBwd& p) {
  const int64_t GR = p.G * p.r;
  const Precision small = precision_for(p.dy.dtype, DType::F32);
  // The dropout mask of X, once: bit m*K + k.
  uint64_t* mask = p.drop.active() ? drop_mask(ctx, p.drop, p.M * p.K) : nullptr;
  const float keep = keep_scale(p.drop);
  const Precision prec = precision_for(p.dy.dtype, p.w.dtype);
  const bool small_rank = p.r <= 16 && p.dy.dtype == DType::BF16 && p.N % 2 == 0 && p.dy.ld % 2 == 0 &&
                          (reinterpret_cast<uintptr_t>(p.dy.data) & 3) == 0;
  // Small ranks with dX wanted: dXA, dB and dA ride inside the dX GEMM (its hook, per block of
  // rows, after dY·W), and dXA is kept as bf16 - the form both the dX low-rank segment and dA
  // (bf16 X) round it to anyway.
  const bool carried = small_rank && p.dx.data && p.x.dtype == DType::BF16 && GR % 2 == 0 && prec == Precision::BF16;
  std::optional<SmallRankBwd> srb;
  float* dxa = nullptr;
  uint16_t* dxa16 = nullptr;
  if (small_rank) {
    srb.emplace(ctx, p);
    if (carried) {
      dxa16 = reuse(t_dxa16, static_cast<size_t>(p.M * GR));
      srb->dxa16 = dxa16;
      if (p.da) srb->carry_da(mask, keep);
    } else {
      dxa = reuse(t_dxa, static_cast<size_t>(p.M * GR));
      srb->dxa = dxa;
      srb->run_alone(ctx);
      srb->finish(ctx);
    }
  } else {
    // dXA[:, g] = s·dY_g·B_g   (B_g stored [N, r]: element (j, n) at b[n*r + j], k-major).
    dxa = reuse(t_dxa, static_cast<size_t>(p.M * GR));
    for (int64_t g = 0; g < p.G; ++g) {
      const Segment seg{mat_src(col_slice(p.dy, g * p.N), false), f32_src(p.b + g * p.N * p.r, p.r, true, p.scale), p.N};
      gemm(ctx, p.M, p.r, {seg}, dxa + g * p.r, GR, false, nullptr, small);
    }
    // dB_g += s·dY_gᵀ·XA_g. Ranks of 64 and up fill whole 64-wide panels: straight into dB.
    if (p.db && p.r >= 64) {
      for (int64_t g = 0; g < p.G; ++g) {
        const Segment seg{mat_src(col_slice(p.dy, g * p.N), true), f32_src(p.xa + g * p.r, GR, true, p.scale), p.M};
        gemm(ctx, p.N, p.r, {seg}, p.db + g * p.N * p.r, p.r, true, nullptr, small);
      }
    } else if (p.db) {
      // Computed transposed (r rows x N columns: full-width panels) as T = (s·XA_g)ᵀ·dY_g,
      // then added into dB_g.
      float* t = reuse(t_tmp, static_cast<size_t>(p.r * p.N));
      for (int64_t g = 0; g < p.G; ++g) {
        const Segment seg{f32_src(p.xa + g * p.r, GR, true, p.scale), mat_src(col_slice(p.dy, g * p.N), true), p.M};
        gemm(ctx, p.r, p.N, {seg}, t, p.N, false, nullptr, small);
        float* db = p.db + g * p.N * p.r;
        parallel_range(ctx, p.N, 256, [&](int64_t b, int64_t e) {
          for (int64_t n = b; n < e; ++n)
            for (int64_t j = 0; j < p.r; ++j) db[n * p.r + j] += t[j * p.N + n];
        });
      }
    }
  }
  // dXA as an operand: element (m, j) of [M, GR].
  auto dxa_src = [&](bool k_major) {
    if (!dxa16) return f32_src(dxa, GR, k_major);
    Src s;
    s.dtype = DType::BF16;
    s.data = dxa16;
    s.ld = GR;
    s.k_major = k_major;
    return s;
  };
  // dA += dXAᵀ·drop(X): rows j (all groups), columns k, reduction m.
  auto run_da = [&] {
    if (!p.da) return;
    Src xs = mat_src(p.x, true);
    xs.drop = p.drop;
    xs.drop_ld = p.K;
    xs.mask_bits = mask;
    gemm(ctx, GR, p.K, {Segment{dxa_src(true), xs, p.M}}, p.da, p.K, true, nullptr, precision_for(p.x.dtype, DType::F32));
  };
  if (!carried) run_da();
  if (!p.dx.data) return;
  const Segment base{mat_src(p.dy, false), weight_src(p.w, true), p.G * p.N};
  Segment low{dxa_src(false), f32_src(p.a, p.K, true), GR};
  if (mask) {
    // The mask multiplies the low-rank term only (dX = dY·W + drop'(dXA·A)).
    low.c_mask = mask;
    low.c_mask_ld = p.K;
    low.c_mask_keep = keep;
  }
  GemmHook hook;
  if (carried) {
    hook.after = 1;
    hook.fn = [&](int64_t m0, int64_t m1, int thread) { srb->rows(m0, m1, thread); };
  }
  // Low-rank segment last: its few k-steps per tile then find the C tile already in cache. A bf16
  // dX goes through the GEMM's epilogue.
  const GemmHook* hk = carried ? &hook : nullptr;
  if (p.dx.dtype == DType::F32) {
    gemm(ctx, p.M, p.K, {base, low}, static_cast<float*>(p.dx.data), p.dx.ld, p.accumulate, nullptr, prec, hk);
  } else {
    Epilogue e;
    e.out = p.dx;
    gemm(ctx, p.M, p.K, {base, low}, nullptr, 0, p.accumulate, nullptr, prec, hk, &e);
  }
  if (carried) srb->finish(ctx);
}

}  // namespace lora::ops::cpu
