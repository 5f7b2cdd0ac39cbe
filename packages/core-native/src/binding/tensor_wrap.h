// The JS `Tensor` class: a handle on a native tensor. dispose() is idempotent; the finalizer frees
// the memory too, as a safety net only. Host bytes held are reported to V8 so its GC sees them.
#pragma once
#include <napi.h>

#include <optional>

#include "../runtime/tensor.h"

namespace lora::binding {

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static Napi::Function Init(Napi::Env env, Napi::Object exports);
  // Wraps a native tensor into a new JS Tensor. `owns_memory` is false for views, whose bytes
  // are already reported to V8 by the tensor they view.
  static Napi::Object Wrap(Napi::Env env, Tensor t, bool owns_memory = true);
  // The tensor behind a JS value, or a clear error naming `arg` (not a Tensor, or disposed).
  static Tensor& Get(const Napi::Value& v, const char* arg);
  static bool IsTensor(const Napi::Value& v);

  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override;

 private:
  static Napi::Value Empty(const Napi::CallbackInfo& info);
  static Napi::Value FromArray(const Napi::CallbackInfo& info);
  static Napi::Value FromQuantized(const Napi::CallbackInfo& info);

  Napi::Value GetDType(const Napi::CallbackInfo& info);
  Napi::Value GetShape(const Napi::CallbackInfo& info);
  Napi::Value GetStrides(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetNumel(const Napi::CallbackInfo& info);
  Napi::Value GetNBytes(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value GetBlockSize(const Napi::CallbackInfo& info);
  Napi::Value GetContiguous(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  Napi::Value Scales(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  Napi::Value Narrow(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  // The tensor, for getters (they run no user code).
  const Tensor& current(const char* what);
  // A copy for methods: it shares the storage, so the memory outlives a dispose() mid-call.
  Tensor live(const char* what) { return current(what); }
  void release(bool report_to_v8);

  std::optional<Tensor> tensor_;
  int64_t external_bytes_ = 0;  // host bytes reported to V8 for this handle
};

}  // namespace lora::binding
