#include "args.h"

#include <cmath>

#include "tensor_wrap.h"

namespace lora::binding {

namespace {
std::string type_of(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_object: return v.IsArray() ? "an array" : v.IsTypedArray() ? "a typed array" : "an object";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_bigint: return "a bigint";
  }
  return "unknown";
}
}  // namespace

void Args::bad(const char* name, const std::string& expected) const {
  throw Error(LORA_ERR_INVALID_ARG, std::string(fn_) + ": argument '" + name + "' must be " + expected, name);
}

Tensor& Args::tensor(size_t i, const char* name) const { return tensor_value(value(i), name); }

Tensor& Args::tensor_value(const Napi::Value& v, const std::string& name) const {
  if (!TensorWrap::IsTensor(v)) bad(name.c_str(), "a Tensor, got " + type_of(v));
  held_.push_back(TensorWrap::Get(v, name.c_str()));  // a copy: shares (and so keeps) the storage
  note(held_.back(), name);
  return held_.back();
}

std::vector<Napi::Value> Args::elements(size_t i, const char* name, uint32_t max, const std::string& expected) const {
  Napi::Value v = value(i);
  if (!v.IsArray()) bad(name, expected + ", got " + type_of(v));  // false for proxies: no traps run
  Napi::Array a = v.As<Napi::Array>();
  const uint32_t n = a.Length();
  if (n > max) bad(name, expected + " of at most " + std::to_string(max) + " elements, got " + std::to_string(n));
  std::vector<Napi::Value> out;
  out.reserve(n);
  for (uint32_t k = 0; k < n; ++k) out.push_back(a.Get(k));  // may run a getter: read each once
  return out;
}

Tensor* Args::optional_tensor(size_t i, const char* name) const {
  if (!has(i)) return nullptr;
  return &tensor(i, name);
}

int64_t Args::integer(size_t i, const char* name, int64_t min, int64_t max) const {
  Napi::Value v = value(i);
  if (!v.IsNumber()) bad(name, "an integer, got " + type_of(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) bad(name, "an integer, got " + std::to_string(d));
  if (d < static_cast<double>(min) || d > static_cast<double>(max)) {
    bad(name, "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " + std::to_string(static_cast<long long>(d)));
  }
  return static_cast<int64_t>(d);
}

int64_t Args::integer_or(size_t i, const char* name, int64_t min, int64_t max, int64_t fallback) const {
  return has(i) ? integer(i, name, min, max) : fallback;
}

double Args::number(size_t i, const char* name) const {
  Napi::Value v = value(i);
  if (!v.IsNumber()) bad(name, "a number, got " + type_of(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) bad(name, "a finite number");
  return d;
}

double Args::number_or(size_t i, const char* name, double fallback) const {
  return has(i) ? number(i, name) : fallback;
}

bool Args::boolean_or(size_t i, const char* name, bool fallback) const {
  if (!has(i)) return fallback;
  Napi::Value v = value(i);
  if (!v.IsBoolean()) bad(name, "a boolean, got " + type_of(v));
  return v.As<Napi::Boolean>().Value();
}

std::string Args::string(size_t i, const char* name) const {
  Napi::Value v = value(i);
  if (!v.IsString()) bad(name, "a string, got " + type_of(v));
  return v.As<Napi::String>().Utf8Value();
}

DType Args::dtype(size_t i, const char* name) const {
  const std::string s = string(i, name);
  DType t;
  if (!parse_dtype(s, &t)) {
    throw Error(LORA_ERR_DTYPE, std::string(fn_) + ": argument '" + name +
                "' must be one of f32, f16, bf16, i32, i64, i8, u8, int4, nf4, got '" + s + "'", name);
  }
  return t;
}

Device Args::device_or(size_t i, const char* name, Device fallback) const {
  if (!has(i)) return fallback;
  const std::string s = string(i, name);
  Device d;
  if (!parse_device(s, &d)) {
    throw Error(LORA_ERR_DEVICE, std::string(fn_) + ": argument '" + name + "' must be 'cpu', 'emu', 'cuda' or 'cuda:N', got '" + s + "'", name);
  }
  return d;
}

Shape Args::shape(size_t i, const char* name) const {
  const std::vector<Napi::Value> dims = elements(i, name, static_cast<uint32_t>(kMaxRank), "an array of non-negative integers");
  Shape s;
  for (uint32_t k = 0; k < dims.size(); ++k) {
    const Napi::Value& e = dims[k];
    if (!e.IsNumber()) bad(name, "an array of non-negative integers (element " + std::to_string(k) + " is " + type_of(e) + ")");
    const double d = e.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::floor(d) != d || d < 0 || d > static_cast<double>(kMaxNumel)) {
      bad(name, "an array of non-negative integers (element " + std::to_string(k) + " is " + std::to_string(d) + ")");
    }
    s.push_back(static_cast<int64_t>(d));
  }
  check_shape(s, name);
  return s;
}

void expect_dtype(const Tensor& t, DType want, const char* name) {
  if (t.dtype != want) {
    throw Error(LORA_ERR_DTYPE, std::string(name) + ": expected dtype " + dtype_name(want) + ", got " + dtype_name(t.dtype), name);
  }
}

void expect_rank(const Tensor& t, int rank, const char* name) {
  if (t.rank() != rank) {
    throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected rank " + std::to_string(rank) + ", got shape " + shape_str(t.shape), name);
  }
}

void expect_shape(const Tensor& t, const Shape& want, const char* name) {
  if (t.shape != want) {
    throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected shape " + shape_str(want) + ", got " + shape_str(t.shape), name);
  }
}

void expect_contiguous(const Tensor& t, const char* name) {
  if (!t.is_contiguous()) throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected a contiguous tensor", name);
}

void expect_same_device(const Tensor& a, const char* an, const Tensor& b, const char* bn) {
  if (a.device() != b.device()) {
    throw Error(LORA_ERR_DEVICE, std::string(bn) + ": expected device " + device_name(a.device()) + " (as " + an + "), got " + device_name(b.device()), bn);
  }
}

}  // namespace lora::binding
