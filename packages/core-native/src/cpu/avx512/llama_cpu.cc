// cpu backend: RMSNorm, rotary embeddings and SwiGLU, vectorised (AVX-512) over a row and split
// over the thread pool by rows. Same contracts as the reference (ops.h); f32 arithmetic. The
// weight grad of RMSNorm is summed per column block by one thread, rows in order (deterministic).
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cmath>
#include <vector>

#include "cpu_kernels.h"
#include "par.h"
#include "vmath.h"

namespace lora::ops::cpu {

namespace {
// w[c..c+16) (masked), or ones when there is no weight.
inline __m512 weight_or_one(const float* w, int64_t c, __mmask16 k) {
  return w ? _mm512_maskz_loadu_ps(k, w + c) : _mm512_set1_ps(1.f);
}
// The sigmoid 1 / (1 + e^-g) (exp_ps: ~1 ulp).
inline __m512 sigmoid_ps(__m512 g) {
  return _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_add_ps(_mm512_set1_ps(1.f), exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g))));
}
}  // namespace

void rmsnorm_fwd(const Ctx& ctx, const RmsNormFwd& p) {
  parallel_range(ctx, p.M * p.G, 8, [&](int64_t b, int64_t e) {
    for (int64_t rg = b; rg < e; ++rg) {
      const int64_t m = rg / p.G, g = rg % p.G;
      const float* x = p.x + m * p.ldx + g * p.C;
      float* y = p.y + m * p.ldy + g * p.C;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t c = 0; c < p.C; c += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(tail_mask16(p.C - c), x + c);
        acc = _mm512_fmadd_ps(v, v, acc);
      }
      const float r = 1.f / std::sqrt(_mm512_reduce_add_ps(acc) / static_cast<float>(p.C) + p.eps);
      p.rstd[rg] = r;
      const __m512 vr = _mm512_set1_ps(r);
      for (int64_t c = 0; c < p.C; c += 16) {
        const __mmask16 k = tail_mask16(p.C - c);
        _mm512_mask_storeu_ps(y + c, k, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + c), vr), weight_or_one(p.w, c, k)));
      }
    }
  });
}

void rmsnorm_bwd(const Ctx& ctx, const RmsNormBwd& p) {
  const float inv_c = 1.f / static_cast<float>(p.C);
  parallel_range(ctx, p.M * p.G, 8, [&](int64_t b, int64_t e) {
    for (int64_t rg = b; rg < e; ++rg) {
      const int64_t m = rg / p.G, g = rg % p.G;
      const float* x = p.x + m * p.ldx + g * p.C;
      const float* dy = p.dy + m * p.lddy + g * p.C;
      float* dx = p.dx + m * p.lddx + g * p.C;
      const __m512 vr = _mm512_set1_ps(p.rstd[rg]);
      __m512 acc = _mm512_setzero_ps();  // Σ (w∘dy)·x̂
      for (int64_t c = 0; c < p.C; c += 16) {
        const __mmask16 k = tail_mask16(p.C - c);
        const __m512 gv = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + c), weight_or_one(p.w, c, k));
        acc = _mm512_fmadd_ps(gv, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + c), vr), acc);
      }
      const __m512 mgx = _mm512_set1_ps(_mm512_reduce_add_ps(acc) * inv_c);
      for (int64_t c = 0; c < p.C; c += 16) {
        const __mmask16 k = tail_mask16(p.C - c);
        const __m512 gv = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + c), weight_or_one(p.w, c, k));
        const __m512 xh = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + c), vr);
        _mm512_mask_storeu_ps(dx + c, k, _mm512_mul_ps(vr, _mm512_fnmadd_ps(xh, mgx, gv)));
      }
    }
  });
  if (!p.dw) return;
  // dw += Σ dy∘x̂: one thread per block of 16 columns, every row and group in order.
  parallel_range(ctx, (p.C + 15) / 16, 1, [&](int64_t b, int64_t e) {
    for (int64_t cb = b; cb < e; ++cb) {
      const int64_t c = cb * 16;
      const __mmask16 k = tail_mask16(p.C - c);
      __m512 acc = _mm512_setzero_ps();
      for (int64_t m = 0; m < p.M; ++m)
        for (int64_t g = 0; g < p.G; ++g) {
          const __m512 xh = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p.x + m * p.ldx + g * p.C + c), _mm512_set1_ps(p.rstd[m * p.G + g]));
          acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, p.dy + m * p.lddy + g * p.C + c), xh, acc);
        }
      _mm512_mask_storeu_ps(p.dw + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, p.dw + c), acc));
    }
  });
}

void rope(const Ctx& ctx, const Rope& p) {
  const int64_t half = p.D / 2;
  parallel_range(ctx, p.M, 4, [&](int64_t b, int64_t e) {
    // cos/sin of this row's angles, shared by its heads (rounded to f32 as the reference does).
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (int64_t m = b; m < e; ++m) {
      for (int64_t i = 0; i < half; ++i) {
        const float ang = p.inv_freq[i] * static_cast<float>(p.pos[m]);
        cs[i] = static_cast<float>(std::cos(static_cast<double>(ang)));
        sn[i] = static_cast<float>(std::sin(static_cast<double>(ang)));
        if (p.inverse) sn[i] = -sn[i];
      }
      for (int64_t h = 0; h < p.H; ++h) {
        const float* x = p.x + m * p.ldx + h * p.D;
        float* y = p.y + m * p.ldy + h * p.D;
        for (int64_t i = 0; i < half; i += 16) {
          const __mmask16 k = tail_mask16(half - i);
          const __m512 a = _mm512_maskz_loadu_ps(k, x + i), bb = _mm512_maskz_loadu_ps(k, x + half + i);
          const __m512 c = _mm512_maskz_loadu_ps(k, cs.data() + i), s = _mm512_maskz_loadu_ps(k, sn.data() + i);
          _mm512_mask_storeu_ps(y + i, k, _mm512_fmsub_ps(a, c, _mm512_mul_ps(bb, s)));
          _mm512_mask_storeu_ps(y + half + i, k, _mm512_fmadd_ps(bb, c, _mm512_mul_ps(a, s)));
        }
      }
    }
  });
}

// 16 elements of a gate/up operand from element i on (masked), widened to f32 when bf16.
inline __m512 load_gu(const void* p, DType t, int64_t i, __mmask16 k) {
  if (t == DType::BF16) return bf16_to_ps(_mm256_maskz_loadu_epi16(k, static_cast<const uint16_t*>(p) + i));
  return _mm512_maskz_loadu_ps(k, static_cast<const float*>(p) + i);
}

void swiglu(const Ctx& ctx, const SwiGlu& p) {
  parallel_range(ctx, p.M, 4, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m)
      for (int64_t f = 0; f < p.F; f += 16) {
        const __mmask16 k = tail_mask16(p.F - f);
        const __m512 g = load_gu(p.gate, p.gu_dtype, m * p.ldg + f, k);
        const __m512 silu = _mm512_mul_ps(g, sigmoid_ps(g));
        _mm512_mask_storeu_ps(p.y + m * p.ldy + f, k, _mm512_mul_ps(silu, load_gu(p.up, p.gu_dtype, m * p.ldu + f, k)));
      }
  });
}

void swiglu_bwd(const Ctx& ctx, const SwiGluBwd& p) {
  const __m512 one = _mm512_set1_ps(1.f);
  parallel_range(ctx, p.M, 4, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m)
      for (int64_t f = 0; f < p.F; f += 16) {
        const __mmask16 k = tail_mask16(p.F - f);
        const __m512 g = load_gu(p.gate, p.gu_dtype, m * p.ldg + f, k);
        const __m512 u = load_gu(p.up, p.gu_dtype, m * p.ldu + f, k);
        const __m512 d = _mm512_maskz_loadu_ps(k, p.dy + m * p.lddy + f);
        const __m512 s = sigmoid_ps(g);
        // silu'(g) = s·(1 + g·(1 - s))
        const __m512 dsilu = _mm512_mul_ps(s, _mm512_fmadd_ps(g, _mm512_sub_ps(one, s), one));
        _mm512_mask_storeu_ps(p.dgate + m * p.lddg + f, k, _mm512_mul_ps(_mm512_mul_ps(d, u), dsilu));
        _mm512_mask_storeu_ps(p.dup + m * p.lddu + f, k, _mm512_mul_ps(d, _mm512_mul_ps(g, s)));
      }
  });
}

}  // namespace lora::ops::cpu
