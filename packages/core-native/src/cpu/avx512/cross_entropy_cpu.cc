// cpu backend: fused linear + cross-entropy streaming over vocabulary chunks. Per chunk c:
// L = H·W_cᵀ ([M, chunk] only), online max/sum per row, and — for the gradient — the
// flash-attention trick on G = Σ_v exp(l_v - max)·W_v: rescale G when the max moves, then
// G += exp(L - max)·W_c. At the end dH = (G / sum - W[target]) · grad_scale / count.
// Two passes over W in total (the forward and the gradient product); dh overwrites.
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu_kernels.h"
#include "gemm.h"
#include "par.h"
#include "vmath.h"

namespace lora::ops::cpu {

void cross_entropy(const Ctx& ctx, const CrossEntropy& p) {
  const float NEG_INF = -std::numeric_limits<float>::infinity();
  int64_t count = 0;
  for (int64_t m = 0; m < p.M; ++m) count += p.targets[m] != p.ignore_index;
  std::vector<float> mx(static_cast<size_t>(p.M), NEG_INF), sum(static_cast<size_t>(p.M), 0.f), tl(static_cast<size_t>(p.M), 0.f);
  std::vector<float> G(p.dh ? static_cast<size_t>(p.M * p.C) : 0, 0.f);
  const int64_t chunk = std::min(p.chunk, p.V);
  std::vector<float> L(static_cast<size_t>(p.M * chunk));
  const Precision prec = precision_for(p.h.dtype, p.w.dtype);
  const bool bf = prec == Precision::BF16;
  // In bf16 precision the GEMMs round their operands to bf16 anyway: an f32 H is converted once
  // (not once per chunk), and the probabilities are written as bf16 rows the gradient GEMM reads
  // in place (the same rounding its packing would do, one pass less over [M, chunk]).
  Mat h = p.h;
  std::vector<uint16_t> h16;
  if (bf && p.h.dtype == DType::F32 && p.C % 2 == 0) {
    h16.resize(static_cast<size_t>(p.M * p.C));
    parallel_range(ctx, p.M, 16, [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) to_bf16_row(static_cast<const float*>(p.h.data) + m * p.h.ld, p.C, h16.data() + m * p.C);
    });
    h = Mat{h16.data(), DType::BF16, p.C};
  }
  const int64_t ldp = (chunk + 1) / 2 * 2;
  std::vector<uint16_t> P16(bf && !G.empty() ? static_cast<size_t>(p.M * ldp) : 0);
  for (int64_t v0 = 0; v0 < p.V; v0 += chunk) {
    const int64_t vc = std::min(chunk, p.V - v0);
    const Weight wc = weight_rows(p.w, v0, vc);
    gemm(ctx, p.M, vc, {Segment{mat_src(h, false), weight_src(wc, false), p.C}}, L.data(), vc, false, nullptr, prec);
    parallel_range(ctx, p.M, 4, [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) {
        float* row = L.data() + m * vc;
        if (p.logits) std::memcpy(p.logits + m * p.V + v0, row, static_cast<size_t>(vc) * 4);
        const int32_t t = p.targets[m];
        if (t != p.ignore_index && t >= v0 && t < v0 + vc) tl[m] = row[t - v0];
        // Row max (NaN noted apart: max_ps keeps its second operand when the first is NaN).
        __m512 vmax = _mm512_set1_ps(NEG_INF);
        __mmask16 nan = 0;
        for (int64_t j = 0; j < vc; j += 16) {
          const __mmask16 k = tail_mask16(vc - j);
          const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(NEG_INF), k, row + j);
          nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
          vmax = _mm512_max_ps(v, vmax);
        }
        const float cmax = _mm512_reduce_max_ps(vmax);
        const float nm = nan ? std::numeric_limits<float>::quiet_NaN() : std::max(mx[m], cmax);
        const float f = mx[m] == NEG_INF ? 0.f : std::exp(mx[m] - nm);
        const __m512 vnm = _mm512_set1_ps(nm);
        __m512 vs = _mm512_setzero_ps();
        for (int64_t j = 0; j < vc; j += 16) {
          const __mmask16 k = tail_mask16(vc - j);
          const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), vnm));
          if (P16.empty()) _mm512_mask_storeu_ps(row + j, k, e);
          else {
            const __m256bh eb = _mm512_cvtneps_pbh(e);
            _mm256_mask_storeu_epi16(P16.data() + m * ldp + j, k, reinterpret_cast<const __m256i&>(eb));
          }
          vs = _mm512_mask_add_ps(vs, k, vs, e);
        }
        const float s = _mm512_reduce_add_ps(vs);
        sum[m] = sum[m] * f + s;
        mx[m] = nm;
        if (!G.empty() && f != 1.f) {
          float* g = G.data() + m * p.C;
          const __m512 vf = _mm512_set1_ps(f);
          for (int64_t c = 0; c < p.C; c += 16) {
            const __mmask16 k = tail_mask16(p.C - c);
            _mm512_mask_storeu_ps(g + c, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + c), vf));
          }
        }
      }
    });
    if (!G.empty()) {
      Src ps;
      ps.dtype = P16.empty() ? DType::F32 : DType::BF16;
      ps.data = P16.empty() ? static_cast<const void*>(L.data()) : static_cast<const void*>(P16.data());
      ps.ld = P16.empty() ? vc : ldp;
      gemm(ctx, p.M, p.C, {Segment{ps, weight_src(wc, true), vc}}, G.data(), p.C, true, nullptr, prec);
    }
  }
  double total = 0.0;
  for (int64_t m = 0; m < p.M; ++m) {
    const bool counted = p.targets[m] != p.ignore_index;
    const float lm = counted ? mx[m] + std::log(sum[m]) - tl[m] : 0.f;
    if (p.loss_rows) p.loss_rows[m] = lm;
    total += lm;
  }
  *p.loss = count ? total / static_cast<double>(count) : 0.0;
  *p.count = count;
  if (!p.dh) return;
  const Src ws = weight_src(p.w, false);
  parallel_range(ctx, p.M, 4, [&](int64_t b, int64_t e) {
    std::vector<float> wt(static_cast<size_t>(p.C));
    for (int64_t m = b; m < e; ++m) {
      float* dh = p.dh + m * p.C;
      const int32_t t = p.targets[m];
      if (t == p.ignore_index || count == 0) {
        std::memset(dh, 0, static_cast<size_t>(p.C) * 4);
        continue;
      }
      decode_row(ws, t, 0, p.C, wt.data());
      const float k = p.grad_scale / static_cast<float>(count), inv = 1.f / sum[m];
      for (int64_t c = 0; c < p.C; ++c) dh[c] = (G[m * p.C + c] * inv - wt[c]) * k;
    }
  });
}

}  // namespace lora::ops::cpu
