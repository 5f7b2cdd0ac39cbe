// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) and the
// dropout mask mapping documented in ops/ops.h. Plain C++ so every backend can reproduce it.
#include <cmath>

#include "../ops/ops.h"

namespace lora::ops {

const float kNF4Table[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                             -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                             0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                             0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

void philox4x32_10(uint64_t seed, uint64_t counter, uint32_t out[4]) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

uint32_t dropout_threshold(float p) {
  if (!(p > 0.f)) return 0;
  const double t = std::floor(static_cast<double>(p) * 4294967296.0);
  return t >= 4294967295.0 ? 4294967295u : static_cast<uint32_t>(t);
}

float dropout_factor(const Dropout& d, uint64_t e) {
  if (!d.active()) return 1.f;
  if (d.p >= 1.f) return 0.f;
  uint32_t w[4];
  philox4x32_10(d.seed, e >> 2, w);
  return w[e & 3] >= dropout_threshold(d.p) ? 1.f / (1.f - d.p) : 0.f;
}

}  // namespace lora::ops
