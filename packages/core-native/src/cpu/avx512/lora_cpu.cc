// Fused LoRA linear on the blocked GEMM. The low-rank term rides along the base product as an
// extra reduction segment ([X, s·XA_g]·[W_g, B_g]ᵀ), so Y is written once and B·A never exists.
// Forward caches XA (f32); the backward regenerates the dropout mask from the seed.
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
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
  // XA = drop(X)·Aᵀ (all groups in one product).
  Src xs = mat_src(p.x, false);
  xs.drop = p.drop;
  xs.drop_ld = p.K;
  gemm(ctx, p.M, GR, {Segment{xs, f32_src(p.a, p.K, false), p.K}}, p.xa, GR, false, nullptr, precision_for(p.x.dtype, DType::F32));
  const Precision prec = precision_for(p.x.dtype, p.w.dtype);
  on_f32(ctx, p.y, p.M, p.G * p.N, false, [&](float* y, int64_t ldy) {
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
  // dXA[:, g] = s·dY_g·B_g   (B_g stored [N, r]: element (j, n) at b[n*r + j], k-major).
  std::vector<float> dxa(static_cast<size_t>(p.M * GR));
  for (int64_t g = 0; g < p.G; ++g) {
    const Segment seg{mat_src(col_slice(p.dy, g * p.N), false), f32_src(p.b + g * p.N * p.r, p.r, true, p.scale), p.N};
    gemm(ctx, p.M, p.r, {seg}, dxa.data() + g * p.r, GR, false, nullptr, small);
  }
  // dB_g += s·dY_gᵀ·XA_g: rows n, columns j, reduction m (both operands k-major).
  if (p.db) {
    for (int64_t g = 0; g < p.G; ++g) {
      Src dys = mat_src(col_slice(p.dy, g * p.N), true);
      dys.scale = p.scale;
      const Segment seg{dys, f32_src(p.xa + g * p.r, GR, true), p.M};
      gemm(ctx, p.N, p.r, {seg}, p.db + g * p.N * p.r, p.r, true, nullptr, small);
    }
  }
  // dA += dXAᵀ·drop(X): rows j (all groups), columns k, reduction m.
  if (p.da) {
    Src xs = mat_src(p.x, true);
    xs.drop = p.drop;
    xs.drop_ld = p.K;
    gemm(ctx, GR, p.K, {Segment{f32_src(dxa.data(), GR, true), xs, p.M}}, p.da, p.K, true, nullptr, precision_for(p.x.dtype, DType::F32));
  }
  if (!p.dx.data) return;
  const Precision prec = precision_for(p.dy.dtype, p.w.dtype);
  const Segment base{mat_src(p.dy, false), weight_src(p.w, true), p.G * p.N};
  const Segment low{f32_src(dxa.data(), GR, false), f32_src(p.a, p.K, true), GR};
  on_f32(ctx, p.dx, p.M, p.K, p.accumulate, [&](float* dx, int64_t ld) {
    if (!p.drop.active()) {
      gemm(ctx, p.M, p.K, {base, low}, dx, ld, p.accumulate, nullptr, prec);
      return;
    }
    // The mask multiplies the low-rank term only: compute it first, mask it, then add dY·W.
    std::vector<float> tmp;
    float* t = dx;
    int64_t ldt = ld;
    if (p.accumulate) {
      tmp.resize(static_cast<size_t>(p.M * p.K));
      t = tmp.data();
      ldt = p.K;
    }
    gemm(ctx, p.M, p.K, {low}, t, ldt, false, nullptr, prec);
    parallel_range(ctx, p.M, 8, [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) {
        apply_dropout(t + m * ldt, p.K, p.drop, static_cast<uint64_t>(m * p.K));
        if (p.accumulate)
          for (int64_t k = 0; k < p.K; ++k) dx[m * ld + k] += t[m * ldt + k];
      }
    });
    gemm(ctx, p.M, p.K, {base}, dx, ld, true, nullptr, prec);
  });
}

}  // namespace lora::ops::cpu
