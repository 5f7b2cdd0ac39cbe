// Fused LoRA linear on the blocked GEMM. The low-rank term rides along the base product as an
// extra reduction segment ([X, s·XA_g]·[W_g, B_g]ᵀ), so Y is written once and B·A never exists;
// when the group width is a multiple of 64 all groups go through one GEMM (a grouped segment:
// the columns of group g read XA's columns of group g). Forward caches XA (f32); the backward
// regenerates the dropout mask from the seed once, as bits, and uses it for dA (drop(X)) and for
// dX (the mask applied to the low-rank product inside the GEMM).
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
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
  std::vector<uint64_t> mask;
  if (p.drop.active()) {
    const int64_t n = p.M * p.K;
    mask.resize(static_cast<size_t>((n + 63) / 64 + 1));
    const int64_t words = (n + 63) / 64;
    parallel_range(ctx, words, 256, [&](int64_t b, int64_t e) {
      const int64_t len = std::min(n, e * 64) - b * 64;
      // Chunks start on word boundaries; each makes its words in a buffer with dropout_bits'
      // padding word, then copies its own words only.
      std::vector<uint64_t> tmp(static_cast<size_t>(e - b + 1));
      dropout_bits(p.drop, static_cast<uint64_t>(b * 64), len, tmp.data());
      std::copy(tmp.begin(), tmp.begin() + (e - b), mask.begin() + b);
    });
    mask.back() = 0;
  }
  const float keep = p.drop.p < 1.f ? 1.f / (1.f - p.drop.p) : 0.f;
  // dXA[:, g] = s·dY_g·B_g   (B_g stored [N, r]: element (j, n) at b[n*r + j], k-major).
  std::vector<float> dxa(static_cast<size_t>(p.M * GR));
  for (int64_t g = 0; g < p.G; ++g) {
    const Segment seg{mat_src(col_slice(p.dy, g * p.N), false), f32_src(p.b + g * p.N * p.r, p.r, true, p.scale), p.N};
    gemm(ctx, p.M, p.r, {seg}, dxa.data() + g * p.r, GR, false, nullptr, small);
  }
  // dB_g += s·dY_gᵀ·XA_g, computed transposed (r rows x N columns: full-width panels) as
  // T = (s·XA_g)ᵀ·dY_g and added into dB_g.
  if (p.db) {
    std::vector<float> t(static_cast<size_t>(p.r * p.N));
    for (int64_t g = 0; g < p.G; ++g) {
      const Segment seg{f32_src(p.xa + g * p.r, GR, true, p.scale), mat_src(col_slice(p.dy, g * p.N), true), p.M};
      gemm(ctx, p.r, p.N, {seg}, t.data(), p.N, false, nullptr, small);
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
    if (!mask.empty()) xs.mask_bits = mask.data();
    gemm(ctx, GR, p.K, {Segment{f32_src(dxa.data(), GR, true), xs, p.M}}, p.da, p.K, true, nullptr, precision_for(p.x.dtype, DType::F32));
  }
  if (!p.dx.data) return;
  const Precision prec = precision_for(p.dy.dtype, p.w.dtype);
  const Segment base{mat_src(p.dy, false), weight_src(p.w, true), p.G * p.N};
  Segment low{f32_src(dxa.data(), GR, false), f32_src(p.a, p.K, true), GR};
  if (!mask.empty()) {
    // The mask multiplies the low-rank term only (dX = dY·W + drop'(dXA·A)).
    low.c_mask = mask.data();
    low.c_mask_ld = p.K;
    low.c_mask_keep = keep;
  }
  on_f32(ctx, p.dx, p.M, p.K, p.accumulate, [&](float* dx, int64_t ld) {
    gemm(ctx, p.M, p.K, {low, base}, dx, ld, p.accumulate, nullptr, prec);
  });
}

}  // namespace lora::ops::cpu
