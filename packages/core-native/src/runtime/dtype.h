// Element types of the tensor runtime. Packed 4-bit types (int4, nf4) store two elements per byte,
// first element in the high nibble (bitsandbytes' order), with one f32 absmax scale per block.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lora {

enum class DType : int32_t { F32 = 0, F16, BF16, I32, I64, I8, U8, INT4, NF4 };
constexpr int kNumDTypes = 9;

const char* dtype_name(DType t);
// Parses a dtype name ("f32", "float32", "bf16", ...); returns false when unknown.
bool parse_dtype(const std::string& s, DType* out);

// Bits per element: 4 for the packed types, 8*itemsize otherwise.
int dtype_bits(DType t);
inline bool dtype_is_packed4(DType t) { return t == DType::INT4 || t == DType::NF4; }
inline bool dtype_is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
// Quantized weight types carry scales: int8 per row, int4/nf4 per block.
inline bool dtype_is_quantized(DType t) { return dtype_is_packed4(t); }

// Bytes needed for n elements (rounded up for packed types). Returns false on overflow.
bool dtype_bytes(DType t, int64_t n, size_t* out);

}  // namespace lora
