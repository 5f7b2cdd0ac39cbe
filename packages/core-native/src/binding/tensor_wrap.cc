#include "tensor_wrap.h"

#include <cstring>
#include <vector>

#include "../runtime/half.h"
#include "args.h"
#include "errors_js.h"

namespace lora::binding {

namespace {

// Per-environment state: the addon can be loaded in worker threads too (each a separate V8
// isolate), so references must never be shared through process-wide statics.
struct EnvData {
  Napi::FunctionReference ctor;
  // A tag object passed to the constructor so that `new Tensor()` from user code is refused.
  Napi::ObjectReference tag;
};

// Marks every Tensor object so that bindings recognise one without running user code: instanceof
// would call a user-defined Tensor[Symbol.hasInstance] or a proxy's getPrototypeOf trap, which
// can dispose tensors in the middle of a call. The tag is an own private property: proxies and
// objects inheriting from a tensor are not tensors.
constexpr napi_type_tag kTensorTag = {0x6c6f72612e74656eULL, 0x9e3779b97f4a7c15ULL};

// The most elements a typed array may have on every engine this addon supports (V8 in Node 20:
// 2^32). Asking N-API for a longer one is a V8 FATAL ERROR (SIGABRT), not an exception.
constexpr uint64_t kMaxTypedArrayLength = uint64_t(1) << 32;

void check_typed_array_length(uint64_t n, const char* what) {
  if (n > kMaxTypedArrayLength) {
    fail(LORA_ERR_UNSUPPORTED, "this", std::string(what) + ": " + std::to_string(n) + " elements exceed the typed-array limit of " +
         std::to_string(kMaxTypedArrayLength) + " (read the tensor in parts with narrow())");
  }
}

EnvData& env_data(Napi::Env env) {
  EnvData* d = env.GetInstanceData<EnvData>();
  if (!d) fail(LORA_ERR_INTERNAL, "", "the Tensor class is not initialised in this environment");
  return *d;
}

int64_t host_bytes(const Tensor& t) {
  int64_t b = t.storage && t.device().is_host_memory() ? static_cast<int64_t>(t.storage->bytes()) : 0;
  if (t.scales) b += static_cast<int64_t>(t.scales->bytes());
  return b;
}

// Copies host bytes into the tensor's storage on whichever device it lives.
void upload(const Tensor& t, const void* src, size_t bytes) {
  copy_bytes(t.device(), t.data(), Device{}, src, bytes);
}

// One look at a typed array: its type, element count and first byte, taken after every argument
// that can run user code was read (a getter may detach or shrink its buffer; a detached array
// reads as 0 elements).
struct HostView {
  napi_typedarray_type type;
  size_t length;
  const uint8_t* data;
};

HostView view_of(const Napi::TypedArray& a) {
  HostView v{};
  void* data = nullptr;
  napi_value buffer;
  size_t offset = 0;
  const napi_status st = napi_get_typedarray_info(a.Env(), a, &v.type, &v.length, &data, &buffer, &offset);
  if (st != napi_ok) throw Napi::Error::New(a.Env());
  v.data = static_cast<const uint8_t*>(data);  // already advanced by the view's byte offset
  return v;
}

std::vector<uint8_t> download(const Tensor& t) {
  std::vector<uint8_t> out(t.nbytes());
  copy_bytes(Device{}, out.data(), t.device(), t.data(), out.size());
  return out;
}

// Writes a JS typed array into tensor `t` (contiguous), converting float data to f16/bf16 with
// round-to-nearest-even. The typed array's element count must equal t.numel().
void write_typed_array(const Tensor& t, const HostView& arr, const char* arg) {
  const int64_t n = t.numel();
  if (static_cast<int64_t>(arr.length) != n) {
    fail(LORA_ERR_SHAPE, arg, "has " + std::to_string(arr.length) + " elements but shape " + shape_str(t.shape) + " needs " + std::to_string(n));
  }
  const napi_typedarray_type at = arr.type;
  const uint8_t* base = arr.data;
  const DType dt = t.dtype;
  auto mismatch = [&](const char* want) {
    fail(LORA_ERR_DTYPE, arg, std::string("a ") + dtype_name(dt) + " tensor is filled from " + want);
  };
  if (dt == DType::F32 || dt == DType::F16 || dt == DType::BF16) {
    if (at == napi_uint16_array && dt != DType::F32) {
      upload(t, base, static_cast<size_t>(n) * 2);  // raw f16/bf16 bits
      return;
    }
    if (at != napi_float32_array && at != napi_float64_array) mismatch(dt == DType::F32 ? "a Float32Array or Float64Array" : "a Float32Array, Float64Array or Uint16Array (raw bits)");
    std::vector<float> f(static_cast<size_t>(n));
    if (at == napi_float32_array) std::memcpy(f.data(), base, f.size() * 4);
    else for (int64_t i = 0; i < n; ++i) { double d; std::memcpy(&d, base + 8 * i, 8); f[i] = static_cast<float>(d); }
    if (dt == DType::F32) { upload(t, f.data(), f.size() * 4); return; }
    std::vector<uint16_t> h(f.size());
    for (size_t i = 0; i < f.size(); ++i) h[i] = dt == DType::BF16 ? f32_to_bf16(f[i]) : f32_to_f16(f[i]);
    upload(t, h.data(), h.size() * 2);
    return;
  }
  const struct { DType dt; napi_typedarray_type at; const char* js; } plain[] = {
      {DType::I32, napi_int32_array, "an Int32Array"},
      {DType::I64, napi_bigint64_array, "a BigInt64Array"},
      {DType::I8, napi_int8_array, "an Int8Array"},
      {DType::U8, napi_uint8_array, "a Uint8Array"},
  };
  for (const auto& p : plain) {
    if (p.dt != dt) continue;
    if (at != p.at) mismatch(p.js);
    upload(t, base, t.nbytes());
    return;
  }
  fail(LORA_ERR_DTYPE, arg, std::string("packed ") + dtype_name(dt) + " tensors are made with Tensor.fromQuantized");
}

// Tensor.empty / fromArray make plain tensors only: the weight-only dtypes have their own makers.
void reject_weight_only(const Args& a, DType dt) {
  if (dtype_is_weight_only(dt)) a.bad("dtype", "a plain dtype (packed 4-bit tensors are made with Tensor.fromQuantized, bf16p ones with quantize)");
}

template <typename JsArray, typename T>
Napi::Value typed_copy(Napi::Env env, const std::vector<uint8_t>& bytes, size_t n) {
  JsArray a = JsArray::New(env, n);
  if (n) std::memcpy(a.Data(), bytes.data(), n * sizeof(T));
  return a;
}

}  // namespace

Napi::Function TensorWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function fn = DefineClass(
      env, "Tensor",
      {
          StaticMethod<&TensorWrap::Empty>("empty"),
          StaticMethod<&TensorWrap::FromArray>("fromArray"),
          StaticMethod<&TensorWrap::FromQuantized>("fromQuantized"),
          InstanceAccessor<&TensorWrap::GetDType>("dtype"),
          InstanceAccessor<&TensorWrap::GetShape>("shape"),
          InstanceAccessor<&TensorWrap::GetStrides>("strides"),
          InstanceAccessor<&TensorWrap::GetDevice>("device"),
          InstanceAccessor<&TensorWrap::GetNumel>("numel"),
          InstanceAccessor<&TensorWrap::GetNBytes>("nbytes"),
          InstanceAccessor<&TensorWrap::GetDisposed>("disposed"),
          InstanceAccessor<&TensorWrap::GetBlockSize>("blockSize"),
          InstanceAccessor<&TensorWrap::GetContiguous>("contiguous"),
          InstanceMethod<&TensorWrap::ToArray>("toArray"),
          InstanceMethod<&TensorWrap::Bytes>("bytes"),
          InstanceMethod<&TensorWrap::Scales>("scales"),
          InstanceMethod<&TensorWrap::CopyFrom>("copyFrom"),
          InstanceMethod<&TensorWrap::To>("to"),
          InstanceMethod<&TensorWrap::Clone>("clone"),
          InstanceMethod<&TensorWrap::Reshape>("reshape"),
          InstanceMethod<&TensorWrap::Narrow>("narrow"),
          InstanceMethod<&TensorWrap::Dispose>("dispose"),
      });
  EnvData* data = new EnvData();
  data->ctor = Napi::Persistent(fn);
  data->tag = Napi::Persistent(Napi::Object::New(env));
  env.SetInstanceData<EnvData>(data);  // deleted by Node when the environment goes away
  exports.Set("Tensor", fn);
  return fn;
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  EnvData* d = info.Env().GetInstanceData<EnvData>();
  if (!d || info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().StrictEquals(d->tag.Value())) {
    throw make_error(info.Env(), LORA_ERR_INVALID_ARG, "", "Tensor: use Tensor.empty, Tensor.fromArray or Tensor.fromQuantized to make tensors");
  }
  if (napi_type_tag_object(info.Env(), info.This(), &kTensorTag) != napi_ok) throw Napi::Error::New(info.Env());
}

TensorWrap::~TensorWrap() { release(true); }

void TensorWrap::release(bool report_to_v8) {
  if (!tensor_) return;
  tensor_.reset();
  // The C call, status ignored: this also runs from the finalizer while a worker or the process
  // shuts down, where node-addon-api's wrapper would turn a failure into a fatal error.
  int64_t now = 0;
  if (report_to_v8 && external_bytes_) napi_adjust_external_memory(Env(), -external_bytes_, &now);
  external_bytes_ = 0;
}

Napi::Object TensorWrap::Wrap(Napi::Env env, Tensor t, bool owns_memory) {
  EnvData& d = env_data(env);
  Napi::Object obj = d.ctor.New({d.tag.Value()});
  TensorWrap* w = Napi::ObjectWrap<TensorWrap>::Unwrap(obj);
  w->external_bytes_ = owns_memory ? host_bytes(t) : 0;
  w->tensor_ = std::move(t);
  if (w->external_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env, w->external_bytes_);
  return obj;
}

bool TensorWrap::IsTensor(const Napi::Value& v) {
  if (v.Type() != napi_object) return false;
  bool tagged = false;
  if (napi_check_object_type_tag(v.Env(), v, &kTensorTag, &tagged) != napi_ok) throw Napi::Error::New(v.Env());
  return tagged;
}

Tensor& TensorWrap::Get(const Napi::Value& v, const char* arg) {
  if (!IsTensor(v)) fail(LORA_ERR_INVALID_ARG, arg, "expected a Tensor");
  TensorWrap* w = Napi::ObjectWrap<TensorWrap>::Unwrap(v.As<Napi::Object>());
  if (!w->tensor_) fail(LORA_ERR_DISPOSED, arg, "tensor was disposed");
  return *w->tensor_;
}

const Tensor& TensorWrap::current(const char* what) {
  if (!tensor_) fail(LORA_ERR_DISPOSED, "this", std::string(what) + ": tensor was disposed");
  return *tensor_;
}

// Tensor.empty(dtype, shape, device = 'cpu'): uninitialised memory of that shape.
Napi::Value TensorWrap::Empty(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "Tensor.empty");
    const DType dt = a.dtype(0, "dtype");
    const Shape s = a.shape(1, "shape");
    const Device d = a.device_or(2, "device", Device{});
    reject_weight_only(a, dt);
    return Wrap(info.Env(), Tensor::empty(dt, s, d));
  });
}

// Tensor.fromArray(typedArray, shape, dtype?, device = 'cpu'). dtype defaults from the array type.
Napi::Value TensorWrap::FromArray(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "Tensor.fromArray");
    if (!info[0].IsTypedArray()) a.bad("data", "a typed array");
    Napi::TypedArray arr = info[0].As<Napi::TypedArray>();
    const napi_typedarray_type type = arr.TypedArrayType();  // fixed for the array's life, unlike its length
    const Shape s = a.shape(1, "shape");  // element getters may run here
    DType dt;
    if (a.has(2)) {
      dt = a.dtype(2, "dtype");
    } else {
      switch (type) {
        case napi_float32_array: case napi_float64_array: dt = DType::F32; break;
        case napi_int32_array: dt = DType::I32; break;
        case napi_bigint64_array: dt = DType::I64; break;
        case napi_int8_array: dt = DType::I8; break;
        case napi_uint8_array: dt = DType::U8; break;
        default: a.bad("data", "a Float32Array, Float64Array, Int32Array, BigInt64Array, Int8Array or Uint8Array when no dtype is given");
      }
    }
    reject_weight_only(a, dt);
    const Device d = a.device_or(3, "device", Device{});
    Tensor t = Tensor::empty(dt, s, d);
    write_typed_array(t, view_of(arr), "data");
    return Wrap(info.Env(), std::move(t));
  });
}

// Tensor.fromQuantized(packed: Uint8Array|Int8Array, scales: Float32Array, shape, dtype, blockSize, device)
//   int4/nf4: packed holds ceil(numel/2) bytes, first element in the high nibble; one scale per
//             blockSize elements (row-major), blockSize even and dividing the last dimension.
//   i8:       packed holds numel signed bytes; one scale per row (last dimension is the row).
Napi::Value TensorWrap::FromQuantized(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "Tensor.fromQuantized");
    if (!info[0].IsTypedArray()) a.bad("packed", "a Uint8Array (int4/nf4) or Int8Array (i8)");
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) a.bad("scales", "a Float32Array");
    Napi::TypedArray packed = info[0].As<Napi::TypedArray>();
    Napi::Float32Array scales = info[1].As<Napi::Float32Array>();
    const Shape s = a.shape(2, "shape");
    const DType dt = a.dtype(3, "dtype");
    if (!(dt == DType::INT4 || dt == DType::NF4 || dt == DType::I8)) a.bad("dtype", "'int4', 'nf4' or 'i8'");
    if (s.empty()) a.bad("shape", "at least one dimension");
    const int64_t last = s.back();
    Tensor t = Tensor::empty(dt == DType::I8 ? DType::I8 : DType::U8, s, Device{});  // placeholder dtype for sizing
    t.dtype = dt;
    const int64_t n = t.numel();
    int64_t nscales;
    if (dt == DType::I8) {
      if (packed.TypedArrayType() != napi_int8_array) a.bad("packed", "an Int8Array for i8");
      nscales = last ? n / last : 0;
      t.block_size = last;
    } else {
      if (packed.TypedArrayType() != napi_uint8_array) a.bad("packed", "a Uint8Array for int4/nf4");
      t.block_size = a.integer(4, "blockSize", 2, 1 << 20);
      if (t.block_size % 2 != 0 || (last % t.block_size) != 0) {
        a.bad("blockSize", "even and a divisor of the last dimension (" + std::to_string(last) + ")");
      }
      nscales = n / t.block_size;
    }
    const Device d = a.device_or(5, "device", Device{});
    size_t need = 0;
    dtype_bytes(dt, n, &need);
    const HostView pv = view_of(packed), sv = view_of(scales);  // every argument read: no user code from here on
    if (pv.length != need) a.bad("packed", std::to_string(need) + " bytes for shape " + shape_str(s) + ", got " + std::to_string(pv.length));
    if (static_cast<int64_t>(sv.length) != nscales) a.bad("scales", std::to_string(nscales) + " values, got " + std::to_string(sv.length));
    Tensor out;
    out.dtype = dt;
    out.shape = s;
    out.strides = Tensor::contiguous_strides(s);
    out.block_size = t.block_size;
    out.storage = std::make_shared<Storage>(d, need);
    out.scales = std::make_shared<Storage>(d, static_cast<size_t>(nscales) * 4);
    copy_bytes(d, out.storage->data(), Device{}, pv.data, need);
    copy_bytes(d, out.scales->data(), Device{}, sv.data, static_cast<size_t>(nscales) * 4);
    return Wrap(info.Env(), std::move(out));
  });
}

Napi::Value TensorWrap::GetDType(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return Napi::String::New(info.Env(), dtype_name(current("dtype").dtype)); });
}

static Napi::Array to_js_array(Napi::Env env, const Shape& s) {
  Napi::Array a = Napi::Array::New(env, s.size());
  for (size_t i = 0; i < s.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(s[i])));
  return a;
}

Napi::Value TensorWrap::GetShape(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return to_js_array(info.Env(), current("shape").shape); });
}
Napi::Value TensorWrap::GetStrides(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return to_js_array(info.Env(), current("strides").strides); });
}
Napi::Value TensorWrap::GetDevice(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return Napi::String::New(info.Env(), device_name(current("device").device())); });
}
Napi::Value TensorWrap::GetNumel(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), static_cast<double>(current("numel").numel())); });
}
Napi::Value TensorWrap::GetNBytes(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), static_cast<double>(current("nbytes").nbytes())); });
}
Napi::Value TensorWrap::GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !tensor_); }
Napi::Value TensorWrap::GetBlockSize(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), static_cast<double>(current("blockSize").block_size)); });
}
Napi::Value TensorWrap::GetContiguous(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), current("contiguous").is_contiguous()); });
}

// toArray(): a copy as the natural typed array (f16/bf16 widened to Float32Array; packed 4-bit as
// its raw Uint8Array bytes — use the dequantize op for values).
Napi::Value TensorWrap::ToArray(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const Tensor t = live("toArray");
    if (!t.is_contiguous()) fail(LORA_ERR_SHAPE, "this", "toArray needs a contiguous tensor (use clone() first)");
    Napi::Env env = info.Env();
    const size_t n = static_cast<size_t>(t.numel());
    const bool raw = t.dtype == DType::U8 || dtype_is_packed4(t.dtype);  // returned as their bytes
    check_typed_array_length(raw ? t.nbytes() : n, "toArray");
    const std::vector<uint8_t> bytes = download(t);
    switch (t.dtype) {
      case DType::F32: return typed_copy<Napi::Float32Array, float>(env, bytes, n);
      case DType::F16: case DType::BF16: {
        Napi::Float32Array out = Napi::Float32Array::New(env, n);
        const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes.data());
        for (size_t i = 0; i < n; ++i) out[i] = t.dtype == DType::BF16 ? bf16_to_f32(h[i]) : f16_to_f32(h[i]);
        return out;
      }
      case DType::I32: return typed_copy<Napi::Int32Array, int32_t>(env, bytes, n);
      case DType::I64: return typed_copy<Napi::BigInt64Array, int64_t>(env, bytes, n);
      case DType::I8: return typed_copy<Napi::Int8Array, int8_t>(env, bytes, n);
      case DType::U8: case DType::INT4: case DType::NF4: return typed_copy<Napi::Uint8Array, uint8_t>(env, bytes, bytes.size());
      case DType::BF16P: {
        // The values in logical [N, K] order (a bf16p weight is always contiguous and 2-d).
        const int64_t N = t.shape[0], K = t.shape[1];
        Napi::Float32Array out = Napi::Float32Array::New(env, n);
        const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes.data());
        for (int64_t r = 0; r < N; ++r)
          for (int64_t c = 0; c < K; ++c) out[static_cast<size_t>(r * K + c)] = bf16_to_f32(h[bf16p_index(r, c, N, K)]);
        return out;
      }
    }
    fail(LORA_ERR_INTERNAL, "", "unknown dtype");
  });
}

// bytes(): the raw element bytes as a Uint8Array copy (f16/bf16 bits, packed nibbles, ...).
Napi::Value TensorWrap::Bytes(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const Tensor t = live("bytes");
    if (!t.is_contiguous()) fail(LORA_ERR_SHAPE, "this", "bytes needs a contiguous tensor");
    check_typed_array_length(t.nbytes(), "bytes");
    const std::vector<uint8_t> b = download(t);
    return typed_copy<Napi::Uint8Array, uint8_t>(info.Env(), b, b.size());
  });
}

// scales(): the f32 quantization scales of an i8/int4/nf4 weight, or undefined.
Napi::Value TensorWrap::Scales(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const Tensor t = live("scales");
    if (!t.scales) return info.Env().Undefined();
    check_typed_array_length(t.scales->bytes() / 4, "scales");
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), t.scales->bytes() / 4);
    copy_bytes(Device{}, out.Data(), t.device(), t.scales->data(), t.scales->bytes());
    return out;
  });
}

// copyFrom(typedArray): overwrite the elements in place (same conversions as fromArray).
Napi::Value TensorWrap::CopyFrom(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "Tensor.copyFrom");
    const Tensor t = live("copyFrom");
    if (!info[0].IsTypedArray()) a.bad("data", "a typed array");
    if (!t.is_contiguous()) fail(LORA_ERR_SHAPE, "this", "copyFrom needs a contiguous tensor");
    write_typed_array(t, view_of(info[0].As<Napi::TypedArray>()), "data");
    return info.This();
  });
}

static Tensor copy_to_device(const Tensor& src, Device d) {
  Tensor out = src;
  out.strides = Tensor::contiguous_strides(src.shape);
  out.offset = 0;
  out.storage = std::make_shared<Storage>(d, src.nbytes());
  copy_bytes(d, out.storage->data(), src.device(), src.data(), src.nbytes());
  if (src.scales) {
    out.scales = std::make_shared<Storage>(d, src.scales->bytes());
    copy_bytes(d, out.scales->data(), src.device(), src.scales->data(), src.scales->bytes());
  }
  return out;
}

// to(device): a contiguous copy on another device.
Napi::Value TensorWrap::To(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "Tensor.to");
    const Tensor t = live("to");
    if (!a.has(0)) a.bad("device", "a device name");
    const Device d = a.device_or(0, "device", Device{});
    if (!t.is_contiguous()) fail(LORA_ERR_SHAPE, "this", "to() needs a contiguous tensor (use clone() first)");
    return Wrap(info.Env(), copy_to_device(t, d));
  });
}

Napi::Value TensorWrap::Clone(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const Tensor t = live("clone");
    if (t.is_contiguous()) return Wrap(info.Env(), copy_to_device(t, t.device()));
    // Gather a strided view into a contiguous copy (host memory only).
    if (!t.device().is_host_memory()) fail(LORA_ERR_UNSUPPORTED, "this", "clone of a strided CUDA view is not supported");
    Tensor out = Tensor::empty(t.dtype, t.shape, t.device());
    const int64_t n = t.numel();
    const int es = dtype_bits(t.dtype) / 8;
    const char* src = static_cast<const char*>(t.storage->data());
    char* dst = static_cast<char*>(out.data());
    std::vector<int64_t> idx(t.shape.size(), 0);
    for (int64_t i = 0; i < n; ++i) {
      int64_t off = t.offset;
      for (size_t k = 0; k < idx.size(); ++k) off += idx[k] * t.strides[k];
      std::memcpy(dst + i * es, src + off * es, es);
      for (size_t k = idx.size(); k-- > 0;) {
        if (++idx[k] < t.shape[k]) break;
        idx[k] = 0;
      }
    }
    return Wrap(info.Env(), std::move(out));
  });
}

// reshape(shape): a view with the same elements (contiguous tensors only); -1 infers one dim.
Napi::Value TensorWrap::Reshape(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "Tensor.reshape");
    current("reshape");  // disposed before the call: say so first
    const std::vector<Napi::Value> dims = a.elements(0, "shape", static_cast<uint32_t>(kMaxRank), "an array of integers");
    const Tensor t = live("reshape");  // after the element getters, which may have disposed it
    Shape s;
    int infer = -1;
    int64_t known = 1;
    for (uint32_t k = 0; k < dims.size(); ++k) {
      const Napi::Value& e = dims[k];
      const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -2;
      if (d == -1 && infer < 0) { infer = static_cast<int>(k); s.push_back(1); continue; }
      if (!(d >= 0) || d != static_cast<double>(static_cast<int64_t>(d)) || d > static_cast<double>(kMaxNumel)) a.bad("shape", "non-negative integers (one -1 allowed)");
      s.push_back(static_cast<int64_t>(d));
      if (s.back() > 0 && known > kMaxNumel / s.back()) a.bad("shape", "fewer elements");
      known *= s.back();
    }
    if (infer >= 0) {
      if (known == 0 || t.numel() % known != 0) a.bad("shape", "compatible with " + std::to_string(t.numel()) + " elements");
      s[infer] = t.numel() / known;
    }
    check_shape(s, "shape");
    Tensor v = t;
    v.shape = s;
    if (v.numel() != t.numel()) a.bad("shape", "a shape with " + std::to_string(t.numel()) + " elements, got " + shape_str(s));
    if (!t.is_contiguous()) fail(LORA_ERR_SHAPE, "this", "reshape needs a contiguous tensor (use clone() first)");
    if (dtype_is_weight_only(t.dtype) || t.scales) fail(LORA_ERR_UNSUPPORTED, "this", "quantized or packed tensors cannot be reshaped");
    v.strides = Tensor::contiguous_strides(s);
    return Wrap(info.Env(), std::move(v), false);
  });
}

// narrow(dim, start, length): a view of `length` slices along `dim` starting at `start`.
Napi::Value TensorWrap::Narrow(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "Tensor.narrow");
    const Tensor t = live("narrow");
    if (dtype_is_weight_only(t.dtype) || t.scales) fail(LORA_ERR_UNSUPPORTED, "this", "quantized or packed tensors cannot be narrowed");
    const int64_t dim = a.integer(0, "dim", 0, t.rank() - 1);
    const int64_t start = a.integer(1, "start", 0, t.shape[dim]);
    const int64_t len = a.integer(2, "length", 0, t.shape[dim] - start);
    Tensor v = t;
    v.shape[dim] = len;
    v.offset = t.offset + start * t.strides[dim];
    return Wrap(info.Env(), std::move(v), false);
  });
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  release(true);
  return info.Env().Undefined();
}

}  // namespace lora::binding
