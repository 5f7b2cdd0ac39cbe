// Quantization of f32 weights (absmax scales) and dequantization back to f32 (tests, merging).
#include <cmath>
#include <cstring>

#include "../weight_scalar.h"
#include "ref.h"

namespace lora::ops::ref {

namespace {
unsigned nf4_code(float x) {
  // Nearest entry of the (sorted) NF4 table; ties go to the lower entry.
  unsigned best = 0;
  float bd = std::fabs(x - kNF4Table[0]);
  for (unsigned i = 1; i < 16; ++i) {
    const float d = std::fabs(x - kNF4Table[i]);
    if (d < bd) { bd = d; best = i; }
  }
  return best;
}
}  // namespace

void quantize(const Ctx&, const Quantize& p) {
  if (p.dtype == DType::BF16P) {
    uint16_t* out = static_cast<uint16_t*>(p.packed);
    for (int64_t n = 0; n < p.rows; ++n)
      for (int64_t k = 0; k < p.cols; ++k) out[bf16p_index(n, k, p.rows, p.cols)] = f32_to_bf16(p.src[n * p.cols + k]);
    return;
  }
  if (p.dtype == DType::I8) {
    int8_t* q = static_cast<int8_t*>(p.packed);
    for (int64_t r = 0; r < p.rows; ++r) {
      const float* row = p.src + r * p.cols;
      float amax = 0.f;
      for (int64_t c = 0; c < p.cols; ++c) amax = std::fmax(amax, std::fabs(row[c]));
      p.scales[r] = amax;
      const float inv = amax > 0.f ? 127.f / amax : 0.f;
      for (int64_t c = 0; c < p.cols; ++c) {
        const float v = std::nearbyint(row[c] * inv);
        q[r * p.cols + c] = static_cast<int8_t>(std::fmax(-127.f, std::fmin(127.f, v)));
      }
    }
    return;
  }
  uint8_t* out = static_cast<uint8_t*>(p.packed);
  const int64_t n = p.rows * p.cols;
  std::memset(out, 0, static_cast<size_t>((n + 1) / 2));
  for (int64_t b0 = 0; b0 < n; b0 += p.block) {
    float amax = 0.f;
    for (int64_t i = b0; i < b0 + p.block; ++i) amax = std::fmax(amax, std::fabs(p.src[i]));
    p.scales[b0 / p.block] = amax;
    const float inv = amax > 0.f ? 1.f / amax : 0.f;
    for (int64_t i = b0; i < b0 + p.block; ++i) {
      const float x = p.src[i] * inv;
      unsigned q;
      if (p.dtype == DType::NF4) q = nf4_code(x);
      else q = static_cast<unsigned>(std::fmax(0.f, std::fmin(15.f, std::nearbyint(x * 7.f) + 8.f)));
      out[i >> 1] |= static_cast<uint8_t>((i & 1) ? q : (q << 4));
    }
  }
}

void dequantize(const Ctx&, const Dequantize& p) {
  for (int64_t r = 0; r < p.w.rows; ++r)
    for (int64_t c = 0; c < p.w.cols; ++c) p.dst[r * p.w.cols + c] = weight_at(p.w, r, c);
}

}  // namespace lora::ops::ref
