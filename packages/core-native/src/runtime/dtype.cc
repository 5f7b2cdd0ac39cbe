#include "dtype.h"

namespace lora {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::I8: return "i8";
    case DType::U8: return "u8";
    case DType::INT4: return "int4";
    case DType::NF4: return "nf4";
    case DType::BF16P: return "bf16p";
  }
  return "?";
}

bool parse_dtype(const std::string& s, DType* out) {
  struct Alias { const char* name; DType t; };
  static const Alias aliases[] = {
      {"f32", DType::F32},   {"float32", DType::F32}, {"f16", DType::F16},  {"float16", DType::F16},
      {"bf16", DType::BF16}, {"bfloat16", DType::BF16}, {"i32", DType::I32}, {"int32", DType::I32},
      {"i64", DType::I64},   {"int64", DType::I64},   {"i8", DType::I8},    {"int8", DType::I8},
      {"u8", DType::U8},     {"uint8", DType::U8},    {"int4", DType::INT4}, {"nf4", DType::NF4},
      {"bf16p", DType::BF16P},
  };
  for (const auto& a : aliases) {
    if (s == a.name) { *out = a.t; return true; }
  }
  return false;
}

int dtype_bits(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 32;
    case DType::F16: case DType::BF16: case DType::BF16P: return 16;
    case DType::I64: return 64;
    case DType::I8: case DType::U8: return 8;
    case DType::INT4: case DType::NF4: return 4;
  }
  return 0;
}

bool dtype_bytes(DType t, int64_t n, size_t* out) {
  if (n < 0) return false;
  const uint64_t bits = static_cast<uint64_t>(dtype_bits(t));
  const uint64_t un = static_cast<uint64_t>(n);
  if (un > (UINT64_MAX - 7) / bits) return false;
  *out = static_cast<size_t>((un * bits + 7) / 8);
  return true;
}

}  // namespace lora
