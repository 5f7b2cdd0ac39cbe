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
#include <vector>

#include "../weight_scalar.h"
#include "cpu_kernels.h"
#include "gemm.h"
#include "par.h"

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
thread_local std::vector<float> t_dxa, t_tmp;
thread_local std::vector<uint64_t> t_mask;
thread_local std::vector<uint32_t> t_bt;

inline __mmask16 tail16(int64_t n) { return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1u); }

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
    const __mmask16 k = tail16(kk - p);
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

// dXA[:, g*r + j] = s·Σ_n dY[m][g*N + n]·B[g*N + n][j] for bf16 dY with even N and row stride:
// B_g transposed to bf16 pair rows once, then dot products over dY's rows as they are.
void dxa_dot(const Ctx& ctx, const LoraBwd& p, float* dxa) {
  const int64_t GR = p.G * p.r, kk = p.N / 2;
  uint32_t* bt = reuse(t_bt, static_cast<size_t>(GR * kk));
  parallel_range(ctx, GR, 4, [&](int64_t b, int64_t e) {
    for (int64_t gj = b; gj < e; ++gj) {
      const int64_t g = gj / p.r, j = gj % p.r;
      const float* bg = p.b + g * p.N * p.r;
      for (int64_t q = 0; q < kk; ++q)
        bt[gj * kk + q] = static_cast<uint32_t>(f32_to_bf16(p.scale * bg[(2 * q) * p.r + j])) |
                          (static_cast<uint32_t>(f32_to_bf16(p.scale * bg[(2 * q + 1) * p.r + j])) << 16);
    }
  });
  const uint32_t* dy = static_cast<const uint32_t*>(p.dy.data);
  const int64_t lda = p.dy.ld / 2;
  parallel_range(ctx, (p.M + kDotRows - 1) / kDotRows, 16, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t m = t * kDotRows;
      const int rm = static_cast<int>(std::min<int64_t>(kDotRows, p.M - m));
      for (int64_t g = 0; g < p.G; ++g)
        for (int64_t j = 0; j < p.r; j += kDotCols) {
          const int rj = static_cast<int>(std::min<int64_t>(kDotCols, p.r - j));
          kDot.t[rm - 1][rj - 1](kk, dy + m * lda + g * kk, lda, bt + (g * p.r + j) * kk, kk, dxa + m * GR + g * p.r + j, GR);
        }
    }
  });
}

template <typename F>
void on_f32(const Ctx& ctx, const MutMat& out, int64_t rows, int64_t cols, bool accumulate, F&& body) {
  if (out.dtype == DType::F32) {
    body(static_cast<float*>(out.data), out.ld);
    return;
  }
  std::vector<float> buf(static_cast<size_t>(rows * cols));
  parallel_range(ctx, rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m)
      for (int64_t c = 0; c < cols; ++c) buf[m * cols + c] = accumulate ? load_act(out.data, out.dtype, m * out.ld + c) : 0.f;
  });
  body(buf.data(), cols);
  parallel_range(ctx, rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m)
      for (int64_t c = 0; c < cols; ++c) store_act(out.data, out.dtype, m * out.ld + c, buf[m * cols + c]);
  });
}
}  // namespace

void lora_fwd(const Ctx& ctx, const LoraFwd& p) {
  const int64_t GR = p.G * p.r;
  // XA = drop(X)·Aᵀ (all groups in one product; the mask is made while X is packed).
  Src xs = mat_src(p.x, false);
  xs.drop = p.drop;
  xs.drop_ld = p.K;
  gemm(ctx, p.M, GR, {Segment{xs, f32_src(p.a, p.K, false), p.K}}, p.xa, GR, false, nullptr, precision_for(p.x.dtype, DType::F32));
  const Precision prec = precision_for(p.x.dtype, p.w.dtype);
  on_f32(ctx, p.y, p.M, p.G * p.N, false, [&](float* y, int64_t ldy) {
    const bool grouped = p.G > 1 && p.N % 64 == 0 && (prec == Precision::F32 || p.r % 2 == 0);
    if (grouped) {
      Segment low{f32_src(p.xa, GR, false, p.scale), f32_src(p.b, p.r, false), p.r};
      low.group_cols = p.N;
      gemm(ctx, p.M, p.G * p.N, {Segment{mat_src(p.x, false), weight_src(p.w, false), p.K}, low}, y, ldy, false, p.bias, prec);
      return;
    }
    for (int64_t g = 0; g < p.G; ++g) {
      const Segment base{mat_src(p.x, false), weight_src(weight_rows(p.w, g * p.N, p.N), false), p.K};
      const Segment low{f32_src(p.xa + g * p.r, GR, false, p.scale), f32_src(p.b + g * p.N * p.r, p.r, false), p.r};
      gemm(ctx, p.M, p.N, {base, low}, y + g * p.N, ldy, false, p.bias ? p.bias + g * p.N : nullptr, prec);
    }
  });
}

// Gradient contract: dA, dB accumulate (+=); dX overwrites (+= when accumulate).
void lora_bwd(const Ctx& ctx, const LoraBwd& p) {
  const int64_t GR = p.G * p.r;
  const Precision small = precision_for(p.dy.dtype, DType::F32);
  // The dropout mask of X, once: bit m*K + k.
  uint64_t* mask = nullptr;
  if (p.drop.active()) {
    const int64_t n = p.M * p.K;
    const int64_t words = (n + 63) / 64;
    mask = reuse(t_mask, static_cast<size_t>(words + 1));
    parallel_range(ctx, words, 256, [&](int64_t b, int64_t e) {
      const int64_t len = std::min(n, e * 64) - b * 64;
      // Chunks start on word boundaries; each makes its words in a buffer with dropout_bits'
      // padding word, then copies its own words only.
      std::vector<uint64_t> tmp(static_cast<size_t>(e - b + 1));
      dropout_bits(p.drop, static_cast<uint64_t>(b * 64), len, tmp.data());
      std::copy(tmp.begin(), tmp.begin() + (e - b), mask + b);
    });
    mask[words] = 0;
  }
  const float keep = p.drop.p < 1.f ? 1.f / (1.f - p.drop.p) : 0.f;
  // dXA[:, g] = s·dY_g·B_g   (B_g stored [N, r]: element (j, n) at b[n*r + j], k-major).
  float* dxa = reuse(t_dxa, static_cast<size_t>(p.M * GR));
  const bool dot = p.r <= 16 && p.dy.dtype == DType::BF16 && p.N % 2 == 0 && p.dy.ld % 2 == 0 &&
                   (reinterpret_cast<uintptr_t>(p.dy.data) & 3) == 0;
  if (dot) {
    dxa_dot(ctx, p, dxa);
  } else {
    for (int64_t g = 0; g < p.G; ++g) {
      const Segment seg{mat_src(col_slice(p.dy, g * p.N), false), f32_src(p.b + g * p.N * p.r, p.r, true, p.scale), p.N};
      gemm(ctx, p.M, p.r, {seg}, dxa + g * p.r, GR, false, nullptr, small);
    }
  }
  // dB_g += s·dY_gᵀ·XA_g. Ranks of 64 and up fill whole 64-wide panels: straight into dB.
  if (p.db && p.r >= 64) {
    for (int64_t g = 0; g < p.G; ++g) {
      const Segment seg{mat_src(col_slice(p.dy, g * p.N), true), f32_src(p.xa + g * p.r, GR, true, p.scale), p.M};
      gemm(ctx, p.N, p.r, {seg}, p.db + g * p.N * p.r, p.r, true, nullptr, small);
    }
  } else if (p.db) {
    // Small ranks: computed transposed (r rows x N columns: full-width panels) as
    // T = (s·XA_g)ᵀ·dY_g, then added into dB_g.
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
  // dA += dXAᵀ·drop(X): rows j (all groups), columns k, reduction m.
  if (p.da) {
    Src xs = mat_src(p.x, true);
    xs.drop = p.drop;
    xs.drop_ld = p.K;
    xs.mask_bits = mask;
    gemm(ctx, GR, p.K, {Segment{f32_src(dxa, GR, true), xs, p.M}}, p.da, p.K, true, nullptr, precision_for(p.x.dtype, DType::F32));
  }
  if (!p.dx.data) return;
  const Precision prec = precision_for(p.dy.dtype, p.w.dtype);
  const Segment base{mat_src(p.dy, false), weight_src(p.w, true), p.G * p.N};
  Segment low{f32_src(dxa, GR, false), f32_src(p.a, p.K, true), GR};
  if (mask) {
    // The mask multiplies the low-rank term only (dX = dY·W + drop'(dXA·A)).
    low.c_mask = mask;
    low.c_mask_ld = p.K;
    low.c_mask_keep = keep;
  }
  on_f32(ctx, p.dx, p.M, p.K, p.accumulate, [&](float* dx, int64_t ld) {
    gemm(ctx, p.M, p.K, {low, base}, dx, ld, p.accumulate, nullptr, prec);
  });
}

}  // namespace lora::ops::cpu
