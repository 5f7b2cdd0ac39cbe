// Element types of the tensor runtime. Packed 4-bit types (int4, nf4) store two elements per byte,
// first element in the high nibble (bitsandbytes' order), with one f32 absmax scale per block.
// bf16p is a bf16 weight [N, K] (N % 16 == 0, K even) stored in the cpu GEMM's panel layout, made
// once by quantize(w, 'bf16p') so that X·Wᵀ on a frozen weight skips packing W on every call (as
// oneDNN's pre-reordered weights or ggml's repacked CPU buffers do): 64-row panels q, the last one
// N - 64q rows wide, each [K/2][width] dwords of pairs (W[n][2j], W[n][2j + 1]), element 2j in the
// low half. Same bytes as bf16; only the cpu and ref backends read it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lora {

enum class DType : int32_t { F32 = 0, F16, BF16, I32, I64, I8, U8, INT4, NF4, BF16P };
constexpr int kNumDTypes = 10;

const char* dtype_name(DType t);
// Parses a dtype name ("f32", "float32", "bf16", ...); returns false when unknown.
bool parse_dtype(const std::string& s, DType* out);

// Bits per element: 4 for the packed types, 8*itemsize otherwise.
int dtype_bits(DType t);
inline bool dtype_is_packed4(DType t) { return t == DType::INT4 || t == DType::NF4; }
// Types only a weight can have (made by quantize or Tensor.fromQuantized, never by Tensor.empty).
inline bool dtype_is_weight_only(DType t) { return dtype_is_packed4(t) || t == DType::BF16P; }
// Whether a [rows, cols] weight has a bf16p layout: whole 16-row groups and k pairs.
inline bool bf16p_shape_ok(int64_t rows, int64_t cols) { return rows % 16 == 0 && cols % 2 == 0; }
// The bf16 element index of W[n][k] in a bf16p weight [N, K] (the layout above).
inline int64_t bf16p_index(int64_t n, int64_t k, int64_t N, int64_t K) {
  const int64_t q = n / 64, width = N - 64 * q < 64 ? N - 64 * q : 64;
  return 2 * (q * 64 * (K / 2) + (k / 2) * width + n % 64) + (k & 1);
}
inline bool dtype_is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
// Quantized weight types carry scales: int8 per row, int4/nf4 per block.
inline bool dtype_is_quantized(DType t) { return dtype_is_packed4(t); }

// Bytes needed for n elements (rounded up for packed types). Returns false on overflow.
bool dtype_bytes(DType t, int64_t n, size_t* out);

}  // namespace lora
