// Scalar element access for the activation and weight formats of ops.h. Internal linkage
// (anonymous namespace) on purpose: this header is included by files compiled with and without
// AVX-512 flags, and the two copies must never be merged by the linker.
#pragma once
#include <cstdint>

#include "../ops/ops.h"
#include "../runtime/half.h"

namespace lora::ops {
namespace {

inline float load_act(const void* p, DType dt, int64_t i) {
  if (dt == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  if (dt == DType::F16) return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

inline void store_act(void* p, DType dt, int64_t i, float v) {
  if (dt == DType::BF16) static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
  else if (dt == DType::F16) static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
  else static_cast<float*>(p)[i] = v;
}

inline float mat_at(const Mat& m, int64_t row, int64_t col) { return load_act(m.data, m.dtype, row * m.ld + col); }

// The 4-bit code of element i of a packed row-major array (first element in the high nibble).
inline unsigned nibble_at(const uint8_t* p, int64_t i) {
  const uint8_t b = p[i >> 1];
  return (i & 1) ? (b & 0xF) : (b >> 4);
}

inline float int4_value(unsigned q) { return (static_cast<float>(q) - 8.f) / 7.f; }

// W[n, k] as f32.
inline float weight_at(const Weight& w, int64_t n, int64_t k) {
  const int64_t i = n * w.cols + k;
  switch (w.dtype) {
    case DType::F32: return static_cast<const float*>(w.data)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case DType::BF16P: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[bf16p_index(n, k, w.rows, w.cols)]);
    case DType::I8: return static_cast<float>(static_cast<const int8_t*>(w.data)[i]) * (w.scales[n] / 127.f);
    case DType::INT4: return int4_value(nibble_at(static_cast<const uint8_t*>(w.data), i)) * w.scales[i / w.block];
    case DType::NF4: return kNF4Table[nibble_at(static_cast<const uint8_t*>(w.data), i)] * w.scales[i / w.block];
    default: return 0.f;
  }
}

}  // namespace
}  // namespace lora::ops
