// Causal multi-head attention, scalar reference (f64 softmax). Head h of row (b, t) lives at
// columns [h*D, (h+1)*D) of row b*T + t. Forward caches lse[B, H, T]; only one row of scores
// exists at a time.
#include <cmath>
#include <limits>
#include <vector>

#include "../weight_scalar.h"
#include "ref.h"

namespace lora::ops::ref {

namespace {
bool key_visible(const int32_t* kv_len, const int32_t* mask, int64_t T, int64_t b, int64_t j) {
  if (kv_len && j >= kv_len[b]) return false;
  if (mask && mask[b * T + j] == 0) return false;
  return true;
}

// Row `row`, head h of q/k/v (f32 or bf16) widened to f32: [D] floats.
void qkv_row(const void* p, DType dt, int64_t ld, int64_t row, int64_t h, int64_t D, float* out) {
  for (int64_t c = 0; c < D; ++c) out[c] = load_act(p, dt, row * ld + h * D + c);
}
}  // namespace

void attn_fwd(const Ctx&, const AttnFwd& p) {
  std::vector<double> s(static_cast<size_t>(p.T));
  std::vector<float> qv(static_cast<size_t>(p.D)), kv(static_cast<size_t>(p.D)), vv(static_cast<size_t>(p.T * p.D));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t i = 0; i < p.T; ++i) {
        qkv_row(p.q, p.qkv_dtype, p.ldq, b * p.T + i, h, p.D, qv.data());
        const float* q = qv.data();
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          if (!key_visible(p.kv_len, p.mask, p.T, b, j)) { s[j] = -std::numeric_limits<double>::infinity(); continue; }
          qkv_row(p.k, p.qkv_dtype, p.ldk, b * p.T + j, h, p.D, kv.data());
          const float* k = kv.data();
          double d = 0.0;
          for (int64_t c = 0; c < p.D; ++c) d += static_cast<double>(q[c]) * k[c];
          s[j] = d * p.scale;
          if (std::isnan(s[j])) mx = s[j];
          else if (s[j] > mx) mx = s[j];
        }
        float* o = p.o + (b * p.T + i) * p.ldo + h * p.D;
        float* lse = p.lse + (b * p.H + h) * p.T + i;
        if (mx == -std::numeric_limits<double>::infinity()) {
          for (int64_t c = 0; c < p.D; ++c) o[c] = 0.f;
          *lse = -std::numeric_limits<float>::infinity();
          continue;
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(s[j] - mx);
        for (int64_t j = 0; j <= i; ++j) qkv_row(p.v, p.qkv_dtype, p.ldv, b * p.T + j, h, p.D, vv.data() + j * p.D);
        for (int64_t c = 0; c < p.D; ++c) {
          double acc = 0.0;
          for (int64_t j = 0; j <= i; ++j) {
            const double pj = std::exp(s[j] - mx);
            if (pj != 0.0 || std::isnan(pj)) acc += pj * vv[j * p.D + c];
          }
          o[c] = static_cast<float>(acc / sum);
        }
        *lse = static_cast<float>(mx + std::log(sum));
      }
}

// Gradient contract: dq, dk, dv overwrite. With P = exp(S - lse), Dᵢ = dOᵢ·Oᵢ:
// dV = Pᵀ·dO, dS = P ⊙ (dO·Vᵀ - D), dQ = scale·dS·K, dK = scale·dSᵀ·Q.
void attn_bwd(const Ctx&, const AttnBwd& p) {
  const int64_t C = p.H * p.D;
  for (int64_t row = 0; row < p.B * p.T; ++row)
    for (int64_t c = 0; c < C; ++c) {
      p.dq[row * p.lddq + c] = 0.f;
      p.dk[row * p.lddk + c] = 0.f;
      p.dv[row * p.lddv + c] = 0.f;
    }
  std::vector<double> dq(static_cast<size_t>(p.D));
  std::vector<float> qv(static_cast<size_t>(p.D)), kv(static_cast<size_t>(p.D)), vv(static_cast<size_t>(p.D));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t i = 0; i < p.T; ++i) {
        const double lse = p.lse[(b * p.H + h) * p.T + i];
        if (lse == -std::numeric_limits<double>::infinity()) continue;
        const int64_t ri = b * p.T + i;
        qkv_row(p.q, p.qkv_dtype, p.ldq, ri, h, p.D, qv.data());
        const float* q = qv.data();
        const float* dO = p.dout + ri * p.lddo + h * p.D;
        double Di = 0.0;
        if (p.o) {
          const float* o = p.o + ri * p.ldo + h * p.D;
          for (int64_t c = 0; c < p.D; ++c) Di += static_cast<double>(dO[c]) * o[c];
        } else {
          // No kept O: D_i = dO_i·O_i = Σ_j P_ij (dO_i·V_j), a first pass over the keys.
          for (int64_t j = 0; j <= i; ++j) {
            if (!key_visible(p.kv_len, p.mask, p.T, b, j)) continue;
            const int64_t rj = b * p.T + j;
            qkv_row(p.k, p.qkv_dtype, p.ldk, rj, h, p.D, kv.data());
            qkv_row(p.v, p.qkv_dtype, p.ldv, rj, h, p.D, vv.data());
            double s = 0.0, dp = 0.0;
            for (int64_t c = 0; c < p.D; ++c) { s += static_cast<double>(q[c]) * kv[c]; dp += static_cast<double>(dO[c]) * vv[c]; }
            Di += std::exp(s * p.scale - lse) * dp;
          }
        }
        for (int64_t c = 0; c < p.D; ++c) dq[c] = 0.0;
        for (int64_t j = 0; j <= i; ++j) {
          if (!key_visible(p.kv_len, p.mask, p.T, b, j)) continue;
          const int64_t rj = b * p.T + j;
          qkv_row(p.k, p.qkv_dtype, p.ldk, rj, h, p.D, kv.data());
          qkv_row(p.v, p.qkv_dtype, p.ldv, rj, h, p.D, vv.data());
          const float* k = kv.data();
          const float* v = vv.data();
          double s = 0.0, dp = 0.0;
          for (int64_t c = 0; c < p.D; ++c) { s += static_cast<double>(q[c]) * k[c]; dp += static_cast<double>(dO[c]) * v[c]; }
          const double pj = std::exp(s * p.scale - lse);
          const double ds = pj * (dp - Di);
          float* dk = p.dk + rj * p.lddk + h * p.D;
          float* dv = p.dv + rj * p.lddv + h * p.D;
          for (int64_t c = 0; c < p.D; ++c) {
            dv[c] += static_cast<float>(pj * dO[c]);
            dk[c] += static_cast<float>(p.scale * ds * q[c]);
            dq[c] += p.scale * ds * k[c];
          }
        }
        float* dqo = p.dq + ri * p.lddq + h * p.D;
        for (int64_t c = 0; c < p.D; ++c) dqo[c] = static_cast<float>(dq[c]);
      }
}

}  // namespace lora::ops::ref
