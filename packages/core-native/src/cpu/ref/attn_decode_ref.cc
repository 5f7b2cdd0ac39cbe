// Scalar KV-cached attention (see ops/decode.h): f32 with an online softmax per query, so no
// [Tq, S] score buffer is kept. Rows of the batch and heads are independent.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../../ops/decode.h"

namespace lora::ops {

void attn_decode_ref(const AttnDecode& p) {
  const int64_t C = p.H * p.D;
  // 1. Append the new keys and values to the cache.
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t i = 0; i < p.Tq; ++i) {
      const int64_t row = b * p.Tq + i;
      float* kc = p.k_cache + (b * p.S + p.past + i) * C;
      float* vc = p.v_cache + (b * p.S + p.past + i) * C;
      std::memcpy(kc, p.k + row * p.ldk, C * sizeof(float));
      std::memcpy(vc, p.v + row * p.ldv, C * sizeof(float));
    }
  }
  // 2. Each new query attends to the cache up to and including itself.
  std::vector<double> acc(p.D);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t i = 0; i < p.Tq; ++i) {
      const int64_t row = b * p.Tq + i;
      const int64_t visible = p.past + i + 1;
      for (int64_t h = 0; h < p.H; ++h) {
        const float* q = p.q + row * p.ldq + h * p.D;
        double m = -std::numeric_limits<double>::infinity();
        double l = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < visible; ++j) {
          if (p.key_mask && p.key_mask[b * p.S + j] == 0) continue;
          const float* kr = p.k_cache + (b * p.S + j) * C + h * p.D;
          double s = 0;
          for (int64_t d = 0; d < p.D; ++d) s += static_cast<double>(q[d]) * kr[d];
          s *= p.scale;
          const float* vr = p.v_cache + (b * p.S + j) * C + h * p.D;
          if (s > m) {
            const double c = std::exp(m - s);  // rescale what was accumulated under the old max
            l *= c;
            for (int64_t d = 0; d < p.D; ++d) acc[d] *= c;
            m = s;
          }
          const double e = std::exp(s - m);
          l += e;
          for (int64_t d = 0; d < p.D; ++d) acc[d] += e * vr[d];
        }
        float* o = p.o + row * p.ldo + h * p.D;
        for (int64_t d = 0; d < p.D; ++d) o[d] = l > 0 ? static_cast<float>(acc[d] / l) : 0.f;
      }
    }
  }
}

}  // namespace lora::ops
