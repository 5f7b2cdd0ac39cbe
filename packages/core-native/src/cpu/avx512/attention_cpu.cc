// cpu backend: causal attention with a streaming (online) softmax over blocks of keys, one task
// per (batch, head); f32 throughout. Forward caches lse[B, H, T]; no [T, T] buffer exists.
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <cmath>
#include <limits>
#include <vector>

#include "cpu_kernels.h"
#include "par.h"

namespace lora::ops::cpu {

namespace {
constexpr int64_t kKeyBlock = 64;

inline bool visible(const int32_t* kv_len, const int32_t* mask, int64_t T, int64_t b, int64_t j) {
  return !(kv_len && j >= kv_len[b]) && !(mask && mask[b * T + j] == 0);
}

inline float dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

void attn_fwd(const Ctx& ctx, const AttnFwd& p) {
  const float NEG_INF = -std::numeric_limits<float>::infinity();
  parallel_range(ctx, p.B * p.H, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> acc(static_cast<size_t>(p.D)), s(static_cast<size_t>(kKeyBlock));
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / p.H, h = task % p.H;
      for (int64_t i = 0; i < p.T; ++i) {
        const float* q = p.q + (b * p.T + i) * p.ldq + h * p.D;
        float mx = NEG_INF, l = 0.f;
        bool any = false, nan = false;
        for (int64_t c = 0; c < p.D; ++c) acc[c] = 0.f;
        for (int64_t j0 = 0; j0 <= i; j0 += kKeyBlock) {
          const int64_t j1 = std::min(i + 1, j0 + kKeyBlock);
          float bmax = NEG_INF;
          for (int64_t j = j0; j < j1; ++j) {
            if (!visible(p.kv_len, p.mask, p.T, b, j)) { s[j - j0] = NEG_INF; continue; }
            any = true;
            const float v = p.scale * dot(q, p.k + (b * p.T + j) * p.ldk + h * p.D, p.D);
            s[j - j0] = v;
            if (v != v) nan = true;
            else if (v > bmax) bmax = v;
          }
          if (bmax == NEG_INF) continue;
          if (bmax > mx) {
            const float f = std::exp(mx - bmax);
            l *= f;
            for (int64_t c = 0; c < p.D; ++c) acc[c] *= f;
            mx = bmax;
          }
          for (int64_t j = j0; j < j1; ++j) {
            if (s[j - j0] == NEG_INF) continue;
            const float pj = std::exp(s[j - j0] - mx);
            l += pj;
            const float* v = p.v + (b * p.T + j) * p.ldv + h * p.D;
            for (int64_t c = 0; c < p.D; ++c) acc[c] += pj * v[c];
          }
        }
        float* o = p.o + (b * p.T + i) * p.ldo + h * p.D;
        float* lse = p.lse + (b * p.H + h) * p.T + i;
        if (nan) {
          for (int64_t c = 0; c < p.D; ++c) o[c] = std::numeric_limits<float>::quiet_NaN();
          *lse = std::numeric_limits<float>::quiet_NaN();
        } else if (!any || mx == NEG_INF) {
          for (int64_t c = 0; c < p.D; ++c) o[c] = 0.f;
          *lse = NEG_INF;
        } else {
          const float inv = 1.f / l;
          for (int64_t c = 0; c < p.D; ++c) o[c] = acc[c] * inv;
          *lse = mx + std::log(l);
        }
      }
    }
  });
}

// Gradient contract: dq, dk, dv overwrite. Per (b, h): P = exp(S - lse), Dᵢ = dOᵢ·Oᵢ,
// dV += P·dO, dS = P(dO·V - D), dQ = scale·dS·K, dK += scale·dSᵀ·Q.
void attn_bwd(const Ctx& ctx, const AttnBwd& p) {
  parallel_range(ctx, p.B * p.H, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> dq(static_cast<size_t>(p.D));
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / p.H, h = task % p.H;
      for (int64_t t = 0; t < p.T; ++t) {
        const int64_t r = b * p.T + t;
        for (int64_t c = 0; c < p.D; ++c) {
          p.dk[r * p.lddk + h * p.D + c] = 0.f;
          p.dv[r * p.lddv + h * p.D + c] = 0.f;
        }
      }
      for (int64_t i = 0; i < p.T; ++i) {
        const int64_t ri = b * p.T + i;
        const float lse = p.lse[(b * p.H + h) * p.T + i];
        float* dqo = p.dq + ri * p.lddq + h * p.D;
        if (lse == -std::numeric_limits<float>::infinity()) {
          for (int64_t c = 0; c < p.D; ++c) dqo[c] = 0.f;
          continue;
        }
        const float* q = p.q + ri * p.ldq + h * p.D;
        const float* dO = p.dout + ri * p.lddo + h * p.D;
        const float Di = dot(dO, p.o + ri * p.ldo + h * p.D, p.D);
        for (int64_t c = 0; c < p.D; ++c) dq[c] = 0.f;
        for (int64_t j = 0; j <= i; ++j) {
          if (!visible(p.kv_len, p.mask, p.T, b, j)) continue;
          const int64_t rj = b * p.T + j;
          const float* k = p.k + rj * p.ldk + h * p.D;
          const float* v = p.v + rj * p.ldv + h * p.D;
          const float pj = std::exp(p.scale * dot(q, k, p.D) - lse);
          const float ds = pj * (dot(dO, v, p.D) - Di) * p.scale;
          float* dk = p.dk + rj * p.lddk + h * p.D;
          float* dv = p.dv + rj * p.lddv + h * p.D;
          for (int64_t c = 0; c < p.D; ++c) {
            dv[c] += pj * dO[c];
            dk[c] += ds * q[c];
            dq[c] += ds * k[c];
          }
        }
        for (int64_t c = 0; c < p.D; ++c) dqo[c] = dq[c];
      }
    }
  });
}

}  // namespace lora::ops::cpu
