// Argument readers for bindings. Each checks the JS value's type and range and throws a
// lora::Error naming the argument and what was expected; `guard` turns it into a JS error.
//
// Re-entrancy: reading an array element may run user code (a getter, a hole read through
// Array.prototype), which can dispose tensors, detach or resize buffers and grow the array. So
// arrays are read once with a length snapshotted up front (elements()), tensors are identified by
// a type tag (never instanceof) and held by value: Args keeps a copy of every tensor it hands out,
// whose shared storage stays alive for the whole call even if JS disposes the handle meanwhile.
// Typed-array memory is looked at only after every argument that can run user code was read.
#pragma once
#include <napi.h>

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "../runtime/device.h"
#include "../runtime/dtype.h"
#include "../runtime/errors.h"
#include "../runtime/tensor.h"

namespace lora::binding {

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}

  size_t size() const { return info_.Length(); }
  bool has(size_t i) const { return i < info_.Length() && !info_[i].IsUndefined() && !info_[i].IsNull(); }
  Napi::Value value(size_t i) const { return i < info_.Length() ? info_[i] : info_.Env().Undefined(); }

  // A live Tensor, held by this Args until the binding returns (see above).
  Tensor& tensor(size_t i, const char* name) const;
  Tensor* optional_tensor(size_t i, const char* name) const;
  // The same for a value read some other way (an element of an array).
  Tensor& tensor_value(const Napi::Value& v, const std::string& name) const;
  // The elements of the JS array at argument i, each read once, at most `max` of them (length
  // snapshotted before any element getter runs). `expected` describes the argument for errors.
  std::vector<Napi::Value> elements(size_t i, const char* name, uint32_t max, const std::string& expected) const;
  int64_t integer(size_t i, const char* name, int64_t min, int64_t max) const;
  int64_t integer_or(size_t i, const char* name, int64_t min, int64_t max, int64_t fallback) const;
  double number(size_t i, const char* name) const;  // finite
  double number_or(size_t i, const char* name, double fallback) const;
  bool boolean_or(size_t i, const char* name, bool fallback) const;
  std::string string(size_t i, const char* name) const;
  DType dtype(size_t i, const char* name) const;
  Device device_or(size_t i, const char* name, Device fallback) const;
  Shape shape(size_t i, const char* name) const;

  [[noreturn]] void bad(const char* name, const std::string& expected) const;

  // Every tensor read through tensor()/optional_tensor() is noted with its argument name and
  // device, so that the op's placement check (pick_backend) sees all of them; tensors read
  // another way (e.g. from an array) are noted with note().
  void note(const Tensor& t, const std::string& name) const { seen_.emplace_back(name, t.device()); }
  const std::vector<std::pair<std::string, Device>>& seen() const { return seen_; }
  // Where the op runs, set by pick_backend (host for ref/cpu/emu, the tensors' CUDA device for cuda).
  void set_op_device(Device d) const { op_device_ = d; }
  Device op_device() const { return op_device_; }

 private:
  const Napi::CallbackInfo& info_;
  const char* fn_;
  mutable std::vector<std::pair<std::string, Device>> seen_;
  mutable std::deque<Tensor> held_;  // a deque: references handed out stay valid as it grows
  mutable Device op_device_{};
};

// Checks used by op bindings after reading tensors.
void expect_dtype(const Tensor& t, DType want, const char* name);
void expect_rank(const Tensor& t, int rank, const char* name);
void expect_shape(const Tensor& t, const Shape& want, const char* name);
void expect_contiguous(const Tensor& t, const char* name);
void expect_same_device(const Tensor& a, const char* an, const Tensor& b, const char* bn);

}  // namespace lora::binding
