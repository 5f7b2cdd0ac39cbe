// Causal multi-head attention with grouped KV heads and a query offset, scalar reference (f64
// softmax). Head h of query row (b, i) lives at columns [h*D, (h+1)*D) of row b*T + i; its KV head
// g = h / (H / Hkv) at columns [g*D, (g+1)*D) of key row b*Tk + j. Forward caches lse[B, H, T];
// only one row of scores exists at a time.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../weight_scalar.h"
#include "ref.h"

namespace lora::ops {

AttnFwd attn_append_cache_host(const AttnFwd& p) {
  if (!p.k_cache) return p;
  const int64_t ckv = p.Hkv * p.D, es = dtype_bits(p.qkv_dtype) / 8;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t i = 0; i < p.T; ++i) {
      const int64_t dst = ((b * p.Tk) + p.q_offset + i) * ckv * es, src = b * p.T + i;
      std::memcpy(static_cast<char*>(p.k_cache) + dst, static_cast<const char*>(p.k) + src * p.ldk * es, static_cast<size_t>(ckv * es));
      std::memcpy(static_cast<char*>(p.v_cache) + dst, static_cast<const char*>(p.v) + src * p.ldv * es, static_cast<size_t>(ckv * es));
    }
  AttnFwd c = p;
  c.k = p.k_cache, c.v = p.v_cache, c.ldk = c.ldv = ckv;
  c.k_cache = c.v_cache = nullptr;
  return c;
}

namespace ref {

namespace {
bool key_visible(const int32_t* kv_len, const int32_t* mask, int64_t Tk, int64_t b, int64_t j) {
  if (kv_len && j >= kv_len[b]) return false;
  if (mask && mask[b * Tk + j] == 0) return false;
  return true;
}

// Row `row`, head h of q/k/v (f32 or bf16) widened to f32: [D] floats.
void qkv_row(const void* p, DType dt, int64_t ld, int64_t row, int64_t h, int64_t D, float* out) {
  for (int64_t c = 0; c < D; ++c) out[c] = load_act(p, dt, row * ld + h * D + c);
}
}  // namespace

void attn_fwd(const Ctx&, const AttnFwd& call) {
  const AttnFwd p = attn_append_cache_host(call);
  const int64_t group = p.H / p.Hkv;
  std::vector<double> s(static_cast<size_t>(p.Tk));
  std::vector<float> qv(static_cast<size_t>(p.D)), kv(static_cast<size_t>(p.D)), vv(static_cast<size_t>(p.Tk * p.D));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t i = 0; i < p.T; ++i) {
        const int64_t g = h / group, last = p.q_offset + i;  // the last key this query sees
        qkv_row(p.q, p.qkv_dtype, p.ldq, b * p.T + i, h, p.D, qv.data());
        const float* q = qv.data();
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= last; ++j) {
          if (!key_visible(p.kv_len, p.mask, p.Tk, b, j)) { s[j] = -std::numeric_limits<double>::infinity(); continue; }
          qkv_row(p.k, p.qkv_dtype, p.ldk, b * p.Tk + j, g, p.D, kv.data());
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
        for (int64_t j = 0; j <= last; ++j) sum += std::exp(s[j] - mx);
        for (int64_t j = 0; j <= last; ++j) qkv_row(p.v, p.qkv_dtype, p.ldv, b * p.Tk + j, g, p.D, vv.data() + j * p.D);
        for (int64_t c = 0; c < p.D; ++c) {
          double acc = 0.0;
          for (int64_t j = 0; j <= last; ++j) {
            const double pj = std::exp(s[j] - mx);
            if (pj != 0.0 || std::isnan(pj)) acc += pj * vv[j * p.D + c];
          }
          o[c] = static_cast<float>(acc / sum);
        }
        *lse = static_cast<float>(mx + std::log(sum));
      }
}

// The reference of the ragged call is the per-request call itself, request by request.
void attn_ragged(const Ctx& c, const AttnRagged& p) {
  for (int64_t r = 0; r < p.nrows; ++r) attn_fwd(c, attn_ragged_row(p, r));
}

// Gradient contract: dq, dk, dv overwrite. With P = exp(S - lse), Dᵢ = dOᵢ·Oᵢ:
// dV = Pᵀ·dO, dS = P ⊙ (dO·Vᵀ - D), dQ = scale·dS·K, dK = scale·dSᵀ·Q; a KV head's dK/dV sum
// over the query heads of its group.
void attn_bwd(const Ctx&, const AttnBwd& p) {
  const int64_t ckv = p.Hkv * p.D, group = p.H / p.Hkv;
  for (int64_t row = 0; row < p.B * p.T; ++row)
    for (int64_t c = 0; c < p.H * p.D; ++c) p.dq[row * p.lddq + c] = 0.f;
  for (int64_t row = 0; row < p.B * p.Tk; ++row)
    for (int64_t c = 0; c < ckv; ++c) {
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
        const int64_t ri = b * p.T + i, g = h / group, last = p.q_offset + i;
        qkv_row(p.q, p.qkv_dtype, p.ldq, ri, h, p.D, qv.data());
        const float* q = qv.data();
        const float* dO = p.dout + ri * p.lddo + h * p.D;
        double Di = 0.0;
        if (p.o) {
          const float* o = p.o + ri * p.ldo + h * p.D;
          for (int64_t c = 0; c < p.D; ++c) Di += static_cast<double>(dO[c]) * o[c];
        } else {
          // No kept O: D_i = dO_i·O_i = Σ_j P_ij (dO_i·V_j), a first pass over the keys.
          for (int64_t j = 0; j <= last; ++j) {
            if (!key_visible(p.kv_len, p.mask, p.Tk, b, j)) continue;
            const int64_t rj = b * p.Tk + j;
            qkv_row(p.k, p.qkv_dtype, p.ldk, rj, g, p.D, kv.data());
            qkv_row(p.v, p.qkv_dtype, p.ldv, rj, g, p.D, vv.data());
            double s = 0.0, dp = 0.0;
            for (int64_t c = 0; c < p.D; ++c) { s += static_cast<double>(q[c]) * kv[c]; dp += static_cast<double>(dO[c]) * vv[c]; }
            Di += std::exp(s * p.scale - lse) * dp;
          }
        }
        for (int64_t c = 0; c < p.D; ++c) dq[c] = 0.0;
        for (int64_t j = 0; j <= last; ++j) {
          if (!key_visible(p.kv_len, p.mask, p.Tk, b, j)) continue;
          const int64_t rj = b * p.Tk + j;
          qkv_row(p.k, p.qkv_dtype, p.ldk, rj, g, p.D, kv.data());
          qkv_row(p.v, p.qkv_dtype, p.ldv, rj, g, p.D, vv.data());
          const float* k = kv.data();
          const float* v = vv.data();
          double s = 0.0, dp = 0.0;
          for (int64_t c = 0; c < p.D; ++c) { s += static_cast<double>(q[c]) * k[c]; dp += static_cast<double>(dO[c]) * v[c]; }
          const double pj = std::exp(s * p.scale - lse);
          const double ds = pj * (dp - Di);
          float* dk = p.dk + rj * p.lddk + g * p.D;
          float* dv = p.dv + rj * p.lddv + g * p.D;
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

}  // namespace ref
}  // namespace lora::ops
