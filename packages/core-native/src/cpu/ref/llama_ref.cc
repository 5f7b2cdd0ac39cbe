// RMSNorm, rotary embeddings and SwiGLU, scalar reference (f64 sums, one rounding per output).
#include <cmath>

#include "../../runtime/half.h"
#include "ref.h"

namespace lora::ops::ref {

void rmsnorm_fwd(const Ctx&, const RmsNormFwd& p) {
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t g = 0; g < p.G; ++g) {
      const float* x = p.x + m * p.ldx + g * p.C;
      float* y = p.y + m * p.ldy + g * p.C;
      double ss = 0.0;
      for (int64_t c = 0; c < p.C; ++c) ss += static_cast<double>(x[c]) * x[c];
      const double r = 1.0 / std::sqrt(ss / static_cast<double>(p.C) + p.eps);
      p.rstd[m * p.G + g] = static_cast<float>(r);
      for (int64_t c = 0; c < p.C; ++c) y[c] = static_cast<float>(x[c] * r * (p.w ? p.w[c] : 1.f));
    }
}

void rmsnorm_bwd(const Ctx&, const RmsNormBwd& p) {
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t g = 0; g < p.G; ++g) {
      const float* x = p.x + m * p.ldx + g * p.C;
      const float* dy = p.dy + m * p.lddy + g * p.C;
      float* dx = p.dx + m * p.lddx + g * p.C;
      const double r = p.rstd[m * p.G + g];
      double sgx = 0.0;
      for (int64_t c = 0; c < p.C; ++c) sgx += static_cast<double>(dy[c]) * (p.w ? p.w[c] : 1.f) * x[c] * r;
      const double mgx = sgx / static_cast<double>(p.C);
      for (int64_t c = 0; c < p.C; ++c) {
        const double gc = static_cast<double>(dy[c]) * (p.w ? p.w[c] : 1.f);
        dx[c] = static_cast<float>(r * (gc - x[c] * r * mgx));
      }
    }
  if (!p.dw) return;
  for (int64_t c = 0; c < p.C; ++c) {
    double s = 0.0;
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t g = 0; g < p.G; ++g) s += static_cast<double>(p.dy[m * p.lddy + g * p.C + c]) * p.x[m * p.ldx + g * p.C + c] * p.rstd[m * p.G + g];
    p.dw[c] += static_cast<float>(s);
  }
}

void rope(const Ctx&, const Rope& p) {
  const int64_t half = p.D / 2;
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t i = 0; i < half; ++i) {
      const float ang = p.inv_freq[i] * static_cast<float>(p.pos[m]);
      const double cs = static_cast<float>(std::cos(static_cast<double>(ang)));
      const double sn = (p.inverse ? -1.0 : 1.0) * static_cast<float>(std::sin(static_cast<double>(ang)));
      for (int64_t h = 0; h < p.H; ++h) {
        const double a = p.x[m * p.ldx + h * p.D + i], b = p.x[m * p.ldx + h * p.D + i + half];
        p.y[m * p.ldy + h * p.D + i] = static_cast<float>(a * cs - b * sn);
        p.y[m * p.ldy + h * p.D + i + half] = static_cast<float>(b * cs + a * sn);
      }
    }
}

// Element i of a gate/up operand (f32, or bf16 widened exactly).
static double gu_at(const void* p, DType t, int64_t i) {
  return t == DType::BF16 ? bf16_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}

void swiglu(const Ctx&, const SwiGlu& p) {
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t f = 0; f < p.F; ++f) {
      const double g = gu_at(p.gate, p.gu_dtype, m * p.ldg + f);
      p.y[m * p.ldy + f] = static_cast<float>(g / (1.0 + std::exp(-g)) * gu_at(p.up, p.gu_dtype, m * p.ldu + f));
    }
}

void swiglu_bwd(const Ctx&, const SwiGluBwd& p) {
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t f = 0; f < p.F; ++f) {
      const double g = gu_at(p.gate, p.gu_dtype, m * p.ldg + f), u = gu_at(p.up, p.gu_dtype, m * p.ldu + f), d = p.dy[m * p.lddy + f];
      const double s = 1.0 / (1.0 + std::exp(-g));
      p.dgate[m * p.lddg + f] = static_cast<float>(d * u * s * (1.0 + g * (1.0 - s)));
      p.dup[m * p.lddu + f] = static_cast<float>(d * g * s);
    }
}

}  // namespace lora::ops::ref
