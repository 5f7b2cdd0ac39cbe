// Scalar reference of the three matmul layouts of a linear layer, f64 accumulation.
// Forward Y = X·Wᵀ + b caches nothing (the backward needs X, which the caller keeps).
#include "../weight_scalar.h"
#include "ref.h"

namespace lora::ops::ref {

void matmul_xwt(const Ctx&, const MatmulXWt& p) {
  if (p.relu_bits)
    for (int64_t w = 0; w < (p.M * p.N + 63) / 64; ++w) p.relu_bits[w] = 0;
  for (int64_t m = 0; m < p.M; ++m) {
    for (int64_t n = 0; n < p.N; ++n) {
      double acc = p.bias ? p.bias[n] : 0.0;
      for (int64_t k = 0; k < p.K; ++k) acc += static_cast<double>(mat_at(p.x, m, k)) * weight_at(p.w, n, k);
      if (p.residual) {
        // As the separate ops would: the f32 product, times the dropout factor (0 when dropped), + residual.
        const float f = dropout_factor(p.drop, p.drop.offset + static_cast<uint64_t>(m * p.N + n));
        const float v = f == 0.f ? 0.f : static_cast<float>(acc) * f;
        acc = static_cast<double>(p.residual[m * p.ld_residual + n]) + v;
      }
      if (p.accumulate) acc += load_act(p.y.data, p.y.dtype, m * p.y.ld + n);
      store_act(p.y.data, p.y.dtype, m * p.y.ld + n, static_cast<float>(acc));
      if (!p.relu_bits) continue;
      // The relu op on the stored value (after any bf16 rounding): kept iff > 0 or NaN.
      const float y = load_act(p.y.data, p.y.dtype, m * p.y.ld + n);
      const bool keep = y > 0.f || y != y;
      if (!keep) store_act(p.y.data, p.y.dtype, m * p.y.ld + n, 0.f);
      const int64_t i = m * p.N + n;
      if (keep) p.relu_bits[i / 64] |= uint64_t(1) << (i % 64);
    }
  }
}

// Backward of X: dX[M,K] = dY[M,N] · W[N,K]. Activation grad: overwrites (+= when accumulate).
void matmul_dyw(const Ctx&, const MatmulDYW& p) {
  for (int64_t m = 0; m < p.M; ++m) {
    for (int64_t k = 0; k < p.K; ++k) {
      double acc = 0.0;
      for (int64_t n = 0; n < p.N; ++n) acc += static_cast<double>(mat_at(p.dy, m, n)) * weight_at(p.w, n, k);
      const int64_t i = m * p.K + k;
      if (p.mask_bits && !((p.mask_bits[i / 64] >> (i % 64)) & 1)) acc = 0.0;
      if (p.accumulate) acc += load_act(p.dx.data, p.dx.dtype, m * p.dx.ld + k);
      store_act(p.dx.data, p.dx.dtype, m * p.dx.ld + k, static_cast<float>(acc));
    }
  }
}

// Backward of W (and b): dW[N,K] += dYᵀ·X, dbias[N] += Σ_m dY. Parameter grads: accumulate.
void matmul_dw(const Ctx&, const MatmulDW& p) {
  for (int64_t n = 0; n < p.N; ++n) {
    for (int64_t k = 0; k < p.K; ++k) {
      double acc = 0.0;
      for (int64_t m = 0; m < p.M; ++m) acc += static_cast<double>(mat_at(p.dy, m, n)) * mat_at(p.x, m, k);
      p.dw[n * p.ld_dw + k] += static_cast<float>(acc);
    }
    if (p.dbias) {
      double acc = 0.0;
      for (int64_t m = 0; m < p.M; ++m) acc += mat_at(p.dy, m, n);
      p.dbias[n] += static_cast<float>(acc);
    }
  }
}

}  // namespace lora::ops::ref
