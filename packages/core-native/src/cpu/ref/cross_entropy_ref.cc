// Linear + cross-entropy, scalar reference: one row of V logits at a time (f64). See
// CrossEntropy in ops.h. dH overwrites.
#include <cmath>
#include <vector>

#include "../weight_scalar.h"
#include "ref.h"

namespace lora::ops::ref {

void cross_entropy(const Ctx&, const CrossEntropy& p) {
  int64_t count = 0;
  for (int64_t m = 0; m < p.M; ++m) count += p.targets[m] != p.ignore_index;
  std::vector<double> logit(static_cast<size_t>(p.V));
  double total = 0.0;
  for (int64_t m = 0; m < p.M; ++m) {
    double mx = -INFINITY;
    for (int64_t v = 0; v < p.V; ++v) {
      double acc = 0.0;
      for (int64_t c = 0; c < p.C; ++c) acc += static_cast<double>(mat_at(p.h, m, c)) * weight_at(p.w, v, c);
      logit[v] = acc;
      if (p.logits) p.logits[m * p.V + v] = static_cast<float>(acc);
      if (std::isnan(acc)) mx = acc;
      else if (acc > mx) mx = acc;
    }
    const int32_t t = p.targets[m];
    const bool counted = t != p.ignore_index;
    double sum = 0.0;
    for (int64_t v = 0; v < p.V; ++v) sum += std::exp(logit[v] - mx);
    const double lse = mx + std::log(sum);
    const double lm = counted ? lse - logit[t] : 0.0;
    if (p.loss_rows) p.loss_rows[m] = static_cast<float>(lm);
    total += lm;
    if (p.dh) {
      for (int64_t c = 0; c < p.C; ++c) {
        double acc = 0.0;
        if (counted) {
          for (int64_t v = 0; v < p.V; ++v) acc += std::exp(logit[v] - lse) * weight_at(p.w, v, c);
          acc -= weight_at(p.w, t, c);
          acc *= static_cast<double>(p.grad_scale) / static_cast<double>(count);
        }
        p.dh[m * p.C + c] = static_cast<float>(acc);
      }
    }
  }
  *p.loss = count ? total / static_cast<double>(count) : 0.0;
  *p.count = count;
}

}  // namespace lora::ops::ref
