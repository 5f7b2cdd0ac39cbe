// The three matmul layouts on the blocked GEMM (gemm.h); bf16 outputs, the fused ReLU (forward)
// and its mask (backward) go through the GEMM's per-tile epilogue.
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <algorithm>
#include <cmath>

#include "../weight_scalar.h"
#include "cpu_kernels.h"
#include "gemm.h"
#include "par.h"

namespace lora::ops::cpu {

void matmul_xwt(const Ctx& ctx, const MatmulXWt& p) {
  const Segment seg{mat_src(p.x, false), weight_src(p.w, false), p.K};
  const Precision prec = precision_for(p.x.dtype, p.w.dtype);
  if (p.y.dtype == DType::F32 && !p.relu_bits && !p.residual) {
    gemm(ctx, p.M, p.N, {seg}, static_cast<float*>(p.y.data), p.y.ld, p.accumulate, p.bias, prec);
    return;
  }
  // bf16 output, the fused ReLU and/or dropout + residual through the GEMM's epilogue (no full
  // f32 copy of Y, no extra pass over it).
  Epilogue e;
  e.out = p.y;
  e.residual = p.residual;
  e.ld_residual = p.ld_residual;
  if (p.residual) e.drop = p.drop;
  const bool fused_relu = p.relu_bits && p.N % 64 == 0;
  if (fused_relu) e.relu_bits = p.relu_bits;
  gemm(ctx, p.M, p.N, {seg}, nullptr, 0, p.accumulate, p.bias, prec, nullptr, &e);
  if (!p.relu_bits || fused_relu) return;
  // Rows that do not start on a 64-bit word: the relu and its bits in a pass of whole words.
  const int64_t n = p.M * p.N;
  parallel_range(ctx, (n + 63) / 64, 256, [&](int64_t b, int64_t e2) {
    for (int64_t w = b; w < e2; ++w) {
      uint64_t word = 0;
      for (int64_t i = w * 64; i < std::min(n, w * 64 + 64); ++i) {
        const int64_t at = (i / p.N) * p.y.ld + i % p.N;
        const float y = load_act(p.y.data, p.y.dtype, at);
        if (y > 0.f || y != y) word |= uint64_t(1) << (i % 64);
        else store_act(p.y.data, p.y.dtype, at, 0.f);
      }
      p.relu_bits[w] = word;
    }
  });
}

void matmul_dyw(const Ctx& ctx, const MatmulDYW& p) {
  const Segment seg{mat_src(p.dy, false), weight_src(p.w, true), p.N};
  const Precision prec = precision_for(p.dy.dtype, p.w.dtype);
  if (p.dx.dtype == DType::F32 && !p.mask_bits) {
    gemm(ctx, p.M, p.K, {seg}, static_cast<float*>(p.dx.data), p.dx.ld, p.accumulate, nullptr, prec);
    return;
  }
  Epilogue e;
  e.out = p.dx;
  e.mask = p.mask_bits;
  gemm(ctx, p.M, p.K, {seg}, nullptr, 0, p.accumulate, nullptr, prec, nullptr, &e);
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
  if (p.dtype == DType::BF16P) {
    pack_bf16p(ctx, p.src, p.rows, p.cols, p.packed);
    return;
  }
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
