// AdamW (PyTorch semantics, decoupled weight decay, bias correction) and Σx² for the global norm.
#include <cmath>

#include "ref.h"

namespace lora::ops::ref {

void adamw(const Ctx&, const AdamW& p) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.step));
  const double step_size = p.lr / bc1, sqrt_bc2 = std::sqrt(bc2);
  for (int64_t i = 0; i < p.n; ++i) {
    const double g = static_cast<double>(p.g[i]) * p.grad_scale;
    double w = p.p[i] * (1.0 - static_cast<double>(p.lr) * p.wd);
    const double m = p.beta1 * static_cast<double>(p.m[i]) + (1.0 - p.beta1) * g;
    const double v = p.beta2 * static_cast<double>(p.v[i]) + (1.0 - p.beta2) * g * g;
    w -= step_size * m / (std::sqrt(v) / sqrt_bc2 + p.eps);
    p.p[i] = static_cast<float>(w);
    p.m[i] = static_cast<float>(m);
    p.v[i] = static_cast<float>(v);
  }
}

void sum_squares(const Ctx&, const SumSquares& p) {
  double s = 0.0;
  for (int64_t i = 0; i < p.n; ++i) s += static_cast<double>(p.x[i]) * p.x[i];
  *p.out = s;
}

}  // namespace lora::ops::ref
