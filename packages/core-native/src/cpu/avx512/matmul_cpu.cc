// The three matmul layouts on the blocked GEMM (gemm.h); bf16 outputs go through an f32 buffer.
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <cmath>
#include <vector>

#include "../weight_scalar.h"
#include "cpu_kernels.h"
#include "gemm.h"
#include "par.h"

namespace lora::ops::cpu {

namespace {
// Runs `body` on an f32 destination: `out` itself when f32, else a buffer converted (and, when
// accumulating, pre-filled) around the call.
template <typename F>
void with_f32_out(const Ctx& ctx, const MutMat& out, int64_t rows, int64_t cols, bool accumulate, F&& body) {
  if (out.dtype == DType::F32) {
    body(static_cast<float*>(out.data), out.ld);
    return;
  }
  std::vector<float> buf(static_cast<size_t>(rows * cols));
  if (accumulate) {
    parallel_range(ctx, rows, 16, [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m)
        for (int64_t c = 0; c < cols; ++c) buf[m * cols + c] = load_act(out.data, out.dtype, m * out.ld + c);
    });
  }
  body(buf.data(), cols);
  parallel_range(ctx, rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m)
      for (int64_t c = 0; c < cols; ++c) store_act(out.data, out.dtype, m * out.ld + c, buf[m * cols + c]);
  });
}
}  // namespace

void matmul_xwt(const Ctx& ctx, const MatmulXWt& p) {
  const Segment seg{mat_src(p.x, false), weight_src(p.w, false), p.K};
  with_f32_out(ctx, p.y, p.M, p.N, p.accumulate, [&](float* c, int64_t ldc) {
    gemm(ctx, p.M, p.N, {seg}, c, ldc, p.accumulate, p.bias, precision_for(p.x.dtype, p.w.dtype));
  });
}

void matmul_dyw(const Ctx& ctx, const MatmulDYW& p) {
  const Segment seg{mat_src(p.dy, false), weight_src(p.w, true), p.N};
  with_f32_out(ctx, p.dx, p.M, p.K, p.accumulate, [&](float* c, int64_t ldc) {
    gemm(ctx, p.M, p.K, {seg}, c, ldc, p.accumulate, nullptr, precision_for(p.dy.dtype, p.w.dtype));
  });
}

// dW[N,K] += dYᵀ·X: A(n, m) = dY[m][n] and B(k, m) = X[m][k], both k-major. dbias += Σ_m dY.
void matmul_dw(const Ctx& ctx, const MatmulDW& p) {
  const Segment seg{mat_src(p.dy, true), mat_src(p.x, true), p.M};
  const Precision prec = p.dy.dtype == DType::F32 && p.x.dtype == DType::F32 ? Precision::F32 : Precision::BF16;
  gemm(ctx, p.N, p.K, {seg}, p.dw, p.ld_dw, true, nullptr, prec);
  if (p.dbias) {
    parallel_range(ctx, p.N, 64, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        double acc = 0.0;
        for (int64_t m = 0; m < p.M; ++m) acc += mat_at(p.dy, m, n);
        p.dbias[n] += static_cast<float>(acc);
      }
    });
  }
}

void quantize(const Ctx& ctx, const Quantize& p) {
  // Rows (i8) or blocks (int4/nf4) are independent; run the reference per slice in parallel.
  const int64_t units = p.dtype == DType::I8 ? p.rows : p.rows * p.cols / p.block;
  const int64_t per = p.dtype == DType::I8 ? p.cols : p.block;
  parallel_range(ctx, units, 64, [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; ++u) {
      const float* src = p.src + u * per;
      float amax = 0.f;
      for (int64_t i = 0; i < per; ++i) amax = std::fmax(amax, std::fabs(src[i]));
      p.scales[u] = amax;
      if (p.dtype == DType::I8) {
        const float inv = amax > 0.f ? 127.f / amax : 0.f;
        int8_t* q = static_cast<int8_t*>(p.packed) + u * per;
        for (int64_t i = 0; i < per; ++i) q[i] = static_cast<int8_t>(std::fmax(-127.f, std::fmin(127.f, std::nearbyint(src[i] * inv))));
        continue;
      }
      const float inv = amax > 0.f ? 1.f / amax : 0.f;
      uint8_t* q = static_cast<uint8_t*>(p.packed) + u * per / 2;
      for (int64_t i = 0; i < per; i += 2) {
        unsigned c[2];
        for (int h = 0; h < 2; ++h) {
          const float x = src[i + h] * inv;
          if (p.dtype == DType::NF4) {
            unsigned best = 0;
            float bd = std::fabs(x - kNF4Table[0]);
            for (unsigned t = 1; t < 16; ++t) {
              const float d = std::fabs(x - kNF4Table[t]);
              if (d < bd) { bd = d; best = t; }
            }
            c[h] = best;
          } else {
            c[h] = static_cast<unsigned>(std::fmax(0.f, std::fmin(15.f, std::nearbyint(x * 7.f) + 8.f)));
          }
        }
        q[i / 2] = static_cast<uint8_t>((c[0] << 4) | c[1]);
      }
    }
  });
}

void dequantize(const Ctx& ctx, const Dequantize& p) {
  const Src s = weight_src(p.w, false);
  parallel_range(ctx, p.w.rows, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) decode_row(s, r, 0, p.w.cols, p.dst + r * p.w.cols);
  });
}

}  // namespace lora::ops::cpu
