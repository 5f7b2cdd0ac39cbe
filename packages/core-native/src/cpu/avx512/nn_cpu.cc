// cpu backend: embedding, layernorm and the elementwise ops, vectorised (AVX-512) and split
// over the thread pool. Same contracts as the reference (ops.h); f32 accumulation.
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../weight_scalar.h"
#include "cpu_kernels.h"
#include "gemm.h"
#include "par.h"
#include "vmath.h"

namespace lora::ops::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;
}  // namespace

Support supports(const std::string& op, const std::vector<DType>&) {
#define LORA_OP_NAME(field, Params, name) name,
  static const char* known[] = {LORA_OP_LIST(LORA_OP_NAME)};
#undef LORA_OP_NAME
  for (const char* k : known)
    if (op == k) return {};
  return {false, "unknown op '" + op + "'"};
}

void embedding_fwd(const Ctx& ctx, const EmbeddingFwd& p) {
  parallel_range(ctx, p.M, 16, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m) {
      float* o = p.out + m * p.C;
      const int64_t e = static_cast<int64_t>(p.ids[m]) * p.C;
      if (p.table_dtype == DType::BF16) {
        const uint16_t* t = static_cast<const uint16_t*>(p.table) + e;
        for (int64_t c = 0; c < p.C; c += 16) {
          const __mmask16 k = tail_mask16(p.C - c);
          _mm512_mask_storeu_ps(o + c, k, bf16_to_ps(_mm256_maskz_loadu_epi16(k, t + c)));
        }
      } else {
        std::memcpy(o, static_cast<const float*>(p.table) + e, static_cast<size_t>(p.C) * 4);
      }
      if (p.pos_table) {
        const float* q = p.pos_table + (static_cast<int64_t>(p.pos[m]) + p.pos_offset) * p.C;
        for (int64_t c = 0; c < p.C; ++c) o[c] += q[c];
      }
    }
  });
}

// Gradient contract: dtable and dpos_table accumulate (+=). Rows may repeat, so the scatter is
// split by table column ranges rather than by tokens.
void embedding_bwd(const Ctx& ctx, const EmbeddingBwd& p) {
  parallel_range(ctx, p.C, 64, [&](int64_t c0, int64_t c1) {
    for (int64_t m = 0; m < p.M; ++m) {
      const float* d = p.dout + m * p.C;
      if (p.dtable) {
        float* t = p.dtable + static_cast<int64_t>(p.ids[m]) * p.C;
        for (int64_t c = c0; c < c1; ++c) t[c] += d[c];
      }
      if (p.dpos_table) {
        float* t = p.dpos_table + (static_cast<int64_t>(p.pos[m]) + p.pos_offset) * p.C;
        for (int64_t c = c0; c < c1; ++c) t[c] += d[c];
      }
    }
  });
}

// Row statistics and the normalisation in 16-lane vectors (lane partial sums, then one reduce).
void layernorm_fwd(const Ctx& ctx, const LayerNormFwd& p) {
  const float inv_c = 1.f / static_cast<float>(p.C);
  parallel_range(ctx, p.M, 8, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m) {
      const float* x = p.x + m * p.C;
      __m512 vs = _mm512_setzero_ps();
      for (int64_t c = 0; c < p.C; c += 16) vs = _mm512_add_ps(vs, _mm512_maskz_loadu_ps(tail_mask16(p.C - c), x + c));
      const float mean = _mm512_reduce_add_ps(vs) * inv_c;
      const __m512 vm = _mm512_set1_ps(mean);
      __m512 vv = _mm512_setzero_ps();
      for (int64_t c = 0; c < p.C; c += 16) {
        const __mmask16 k = tail_mask16(p.C - c);
        const __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + c), vm);
        vv = _mm512_fmadd_ps(d, d, vv);
      }
      const float rstd = 1.f / std::sqrt(_mm512_reduce_add_ps(vv) * inv_c + p.eps);
      const __m512 vr = _mm512_set1_ps(rstd);
      float* y = p.y + m * p.C;
      for (int64_t c = 0; c < p.C; c += 16) {
        const __mmask16 k = tail_mask16(p.C - c);
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), vm), vr);
        if (p.gamma) t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(k, p.gamma + c));
        if (p.beta) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(k, p.beta + c));
        _mm512_mask_storeu_ps(y + c, k, t);
      }
      p.mean[m] = mean;
      p.rstd[m] = rstd;
    }
  });
}

// Gradient contract: dX overwrites; dgamma, dbeta accumulate (+=) when given.
void layernorm_bwd(const Ctx& ctx, const LayerNormBwd& p) {
  const float inv_c = 1.f / static_cast<float>(p.C);
  parallel_range(ctx, p.M, 8, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; ++m) {
      const float* dy = p.dy + m * p.C;
      const __m512 vr = _mm512_set1_ps(p.rstd[m]);
      // x̂ = (x - mean)·rstd, or (y - beta) / gamma from the output (0 in masked lanes).
      auto xhat = [&](int64_t c, __mmask16 k) {
        if (p.y) {
          __m512 t = _mm512_maskz_loadu_ps(k, p.y + m * p.C + c);
          if (p.beta) t = _mm512_sub_ps(t, _mm512_maskz_loadu_ps(k, p.beta + c));
          return _mm512_maskz_div_ps(k, t, _mm512_mask_loadu_ps(_mm512_set1_ps(1.f), k, p.gamma + c));
        }
        return _mm512_mul_ps(_mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, p.x + m * p.C + c), _mm512_set1_ps(p.mean[m])), vr);
      };
      // g = dy·gamma; sg = mean(g), sgx = mean(g·x̂).
      __m512 vsg = _mm512_setzero_ps(), vsgx = _mm512_setzero_ps();
      for (int64_t c = 0; c < p.C; c += 16) {
        const __mmask16 k = tail_mask16(p.C - c);
        __m512 g = _mm512_maskz_loadu_ps(k, dy + c);
        if (p.gamma) g = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(k, p.gamma + c));
        const __m512 xh = xhat(c, k);
        vsg = _mm512_add_ps(vsg, g);
        vsgx = _mm512_fmadd_ps(g, xh, vsgx);
      }
      const __m512 sg = _mm512_set1_ps(_mm512_reduce_add_ps(vsg) * inv_c), sgx = _mm512_set1_ps(_mm512_reduce_add_ps(vsgx) * inv_c);
      float* dx = p.dx + m * p.C;
      for (int64_t c = 0; c < p.C; c += 16) {
        const __mmask16 k = tail_mask16(p.C - c);
        __m512 g = _mm512_maskz_loadu_ps(k, dy + c);
        if (p.gamma) g = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(k, p.gamma + c));
        const __m512 xh = xhat(c, k);
        _mm512_mask_storeu_ps(dx + c, k, _mm512_mul_ps(vr, _mm512_sub_ps(_mm512_sub_ps(g, sg), _mm512_mul_ps(xh, sgx))));
      }
    }
  });
  if (p.dgamma || p.dbeta) {
    parallel_range(ctx, p.C, 64, [&](int64_t c0, int64_t c1) {
      for (int64_t m = 0; m < p.M; ++m) {
        const float* dy = p.dy + m * p.C;
        for (int64_t c = c0; c < c1; ++c) {
          const float xh = p.y ? (p.y[m * p.C + c] - (p.beta ? p.beta[c] : 0.f)) / p.gamma[c] : (p.x[m * p.C + c] - p.mean[m]) * p.rstd[m];
          if (p.dgamma) p.dgamma[c] += dy[c] * xh;
          if (p.dbeta) p.dbeta[c] += dy[c];
        }
      }
    });
  }
}

// With bits, threads take whole 64-element words (each word written by one thread).
void relu(const Ctx& ctx, const Relu& p) {
  const int64_t unit = p.bits ? 64 : 1;
  parallel_range(ctx, (p.n + unit - 1) / unit, kGrain / unit, [&](int64_t wb, int64_t we) {
    const int64_t b = wb * unit, e = std::min(p.n, we * unit);
    if (!p.bits) {
      for (int64_t i = b; i < e; i += 16) {
        const __mmask16 k = tail_mask16(e - i);
        const __m512 x = _mm512_maskz_loadu_ps(k, p.x + i);
        _mm512_mask_storeu_ps(p.y + i, k, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NLE_UQ), x));  // x > 0 or NaN
      }
      return;
    }
    // One 64-element word per iteration, its bits gathered in a register and stored once.
    for (int64_t i = b; i < e; i += 64) {
      uint64_t word = 0;
      for (int64_t j = i; j < std::min(e, i + 64); j += 16) {
        const __mmask16 k = tail_mask16(e - j);
        const __m512 x = _mm512_maskz_loadu_ps(k, p.x + j);
        const __mmask16 keep = _mm512_mask_cmp_ps_mask(k, x, _mm512_setzero_ps(), _CMP_NLE_UQ);  // x > 0 or NaN
        _mm512_mask_storeu_ps(p.y + j, k, _mm512_maskz_mov_ps(keep, x));
        word |= static_cast<uint64_t>(keep) << (j - i);
      }
      p.bits[i / 64] = word;
    }
  });
}

// Gradient contract: dX overwrites.
void relu_bwd(const Ctx& ctx, const ReluBwd& p) {
  parallel_range(ctx, p.n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i += 16) {
      const __mmask16 k = tail_mask16(e - i);
      const __m512 dy = _mm512_maskz_loadu_ps(k, p.dy + i);
      if (p.bits) {
        _mm512_mask_storeu_ps(p.dx + i, k, _mm512_maskz_mov_ps(bits16(p.bits, i, e - i), dy));
        continue;
      }
      const __m512 y = _mm512_maskz_loadu_ps(k, p.y + i);
      const __mmask16 pos = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ);
      const __mmask16 nan = _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q);
      _mm512_mask_storeu_ps(p.dx + i, k, _mm512_mask_mov_ps(_mm512_maskz_mov_ps(pos, dy), nan, y));
    }
  });
}

void add(const Ctx& ctx, const Add& p) {
  parallel_range(ctx, p.n, kGrain, [&](int64_t b, int64_t e) {
    const __m512 al = _mm512_set1_ps(p.alpha);
    for (int64_t i = b; i < e; i += 16) {
      const __mmask16 k = tail_mask16(e - i);
      const __m512 v = _mm512_fmadd_ps(al, _mm512_maskz_loadu_ps(k, p.b + i), _mm512_maskz_loadu_ps(k, p.a + i));
      _mm512_mask_storeu_ps(p.out + i, k, v);
    }
  });
}

void scale(const Ctx& ctx, const Scale& p) {
  parallel_range(ctx, p.n, kGrain, [&](int64_t b, int64_t e) {
    const __m512 al = _mm512_set1_ps(p.alpha);
    for (int64_t i = b; i < e; i += 16) {
      const __mmask16 k = tail_mask16(e - i);
      _mm512_mask_storeu_ps(p.out + i, k, _mm512_mul_ps(al, _mm512_maskz_loadu_ps(k, p.x + i)));
    }
  });
}

void cast(const Ctx& ctx, const Cast& p) {
  parallel_range(ctx, p.n, kGrain, [&](int64_t b, int64_t e) {
    float buf[16];
    for (int64_t i = b; i < e; i += 16) {
      const int64_t len = std::min<int64_t>(16, e - i);
      const __mmask16 k = tail_mask16(len);
      __m512 v;
      if (p.src_dtype == DType::F32) v = _mm512_maskz_loadu_ps(k, static_cast<const float*>(p.src) + i);
      else if (p.src_dtype == DType::BF16)
        v = bf16_to_ps(_mm256_maskz_loadu_epi16(k, static_cast<const uint16_t*>(p.src) + i));
      else v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, static_cast<const uint16_t*>(p.src) + i));
      if (p.dst_dtype == DType::F32) {
        _mm512_mask_storeu_ps(static_cast<float*>(p.dst) + i, k, v);
      } else if (p.dst_dtype == DType::BF16) {
        _mm256_mask_storeu_epi16(static_cast<uint16_t*>(p.dst) + i, k, bf16_exact(v));
      } else {
        // f16: exact RNE with NaN quieting, as half.h (the hardware converter differs on NaN payloads).
        _mm512_storeu_ps(buf, v);
        for (int64_t j = 0; j < len; ++j) store_act(p.dst, p.dst_dtype, i + j, buf[j]);
      }
    }
  });
}

void dropout(const Ctx& ctx, const DropoutOp& p) {
  parallel_range(ctx, p.n, kGrain, [&](int64_t b, int64_t e) {
    if (p.out != p.x) std::memcpy(p.out + b, p.x + b, static_cast<size_t>(e - b) * 4);
    apply_dropout(p.out + b, e - b, p.drop, static_cast<uint64_t>(b));
  });
}

void adamw(const Ctx& ctx, const AdamW& p) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.step));
  const float step_size = static_cast<float>(p.lr / bc1), inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float decay = 1.f - p.lr * p.wd;
  parallel_range(ctx, p.n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float g = p.g[i] * p.grad_scale;
      const float m = p.beta1 * p.m[i] + (1.f - p.beta1) * g;
      const float v = p.beta2 * p.v[i] + (1.f - p.beta2) * g * g;
      p.p[i] = p.p[i] * decay - step_size * m / (std::sqrt(v) * inv_sqrt_bc2 + p.eps);
      p.m[i] = m;
      p.v[i] = v;
    }
  });
}

void sum_squares(const Ctx& ctx, const SumSquares& p) {
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  std::vector<double> chunk_sums;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads * 4, (p.n + kGrain - 1) / kGrain));
  const int64_t step = (p.n + chunks - 1) / chunks;
  chunk_sums.assign(static_cast<size_t>(chunks), 0.0);
  auto body = [&](int64_t c, int) {
    const int64_t b = c * step, e = std::min(p.n, b + step);
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    for (int64_t i = b; i < e; i += 16) {
      const __m512 x = _mm512_maskz_loadu_ps(tail_mask16(e - i), p.x + i);
      const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
      const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
      acc0 = _mm512_fmadd_pd(lo, lo, acc0);
      acc1 = _mm512_fmadd_pd(hi, hi, acc1);
    }
    chunk_sums[c] = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
  };
  if (ctx.pool && chunks > 1) ctx.pool->parallel_for(chunks, body);
  else for (int64_t c = 0; c < chunks; ++c) body(c, 0);
  double s = 0.0;
  for (double v : chunk_sums) s += v;
  *p.out = s;
}

}  // namespace lora::ops::cpu
