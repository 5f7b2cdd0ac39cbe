// Layernorm over the last dim, f64 statistics. Forward caches mean[M] and rstd[M].
#include <cmath>

#include "ref.h"

namespace lora::ops::ref {

void layernorm_fwd(const Ctx&, const LayerNormFwd& p) {
  for (int64_t m = 0; m < p.M; ++m) {
    const float* x = p.x + m * p.C;
    double s = 0.0;
    for (int64_t c = 0; c < p.C; ++c) s += x[c];
    const double mean = s / static_cast<double>(p.C);
    double v = 0.0;
    for (int64_t c = 0; c < p.C; ++c) v += (x[c] - mean) * (x[c] - mean);
    const double rstd = 1.0 / std::sqrt(v / static_cast<double>(p.C) + p.eps);
    for (int64_t c = 0; c < p.C; ++c) {
      double y = (x[c] - mean) * rstd;
      if (p.gamma) y *= p.gamma[c];
      if (p.beta) y += p.beta[c];
      p.y[m * p.C + c] = static_cast<float>(y);
    }
    p.mean[m] = static_cast<float>(mean);
    p.rstd[m] = static_cast<float>(rstd);
  }
}

// Gradient contract: dX overwrites; dgamma, dbeta accumulate (+=) when given.
// With xh = (x - mean)·rstd and g = dy·gamma: dx = rstd·(g - mean(g) - xh·mean(g·xh)).
void layernorm_bwd(const Ctx&, const LayerNormBwd& p) {
  for (int64_t m = 0; m < p.M; ++m) {
    const float* dy = p.dy + m * p.C;
    const double rstd = p.rstd[m];
    // x̂ from the input, or from the output: (y - beta) / gamma.
    auto xhat = [&](int64_t c) -> double {
      if (p.y) return (static_cast<double>(p.y[m * p.C + c]) - (p.beta ? p.beta[c] : 0.f)) / p.gamma[c];
      return (p.x[m * p.C + c] - static_cast<double>(p.mean[m])) * rstd;
    };
    double sg = 0.0, sgx = 0.0;
    for (int64_t c = 0; c < p.C; ++c) {
      const double xh = xhat(c);
      const double g = static_cast<double>(dy[c]) * (p.gamma ? p.gamma[c] : 1.f);
      sg += g;
      sgx += g * xh;
    }
    sg /= static_cast<double>(p.C);
    sgx /= static_cast<double>(p.C);
    for (int64_t c = 0; c < p.C; ++c) {
      const double xh = xhat(c);
      const double g = static_cast<double>(dy[c]) * (p.gamma ? p.gamma[c] : 1.f);
      p.dx[m * p.C + c] = static_cast<float>(rstd * (g - sg - xh * sgx));
      if (p.dgamma) p.dgamma[c] += static_cast<float>(dy[c] * xh);
      if (p.dbeta) p.dbeta[c] += dy[c];
    }
  }
}

}  // namespace lora::ops::ref
