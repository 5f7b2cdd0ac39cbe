// Shared validation for op bindings: backend choice + device placement + honest supports(), dtype
// checks, row-major matrix views (any rank, rows = product of the leading dims), weights with
// their scales, and output/input aliasing. Every failure is a lora::Error naming the argument.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "../ops/ops.h"
#include "../runtime/tensor.h"
#include "args.h"

namespace lora::binding {

// Reads the backend name at argument i ("auto" when absent: cpu when usable, else ref), checks
// that it implements `op` for these dtypes and sizes, and returns its table. Unsupported ->
// ERR_LORA_UNSUPPORTED with the backend's reason.
const ops::OpTable& pick_backend(const Args& a, size_t i, const char* op, const std::vector<DType>& dtypes,
                                 const std::vector<int64_t>& sizes);

// Where an op runs: the backend's name ("auto" resolved) and the device its tensors are on.
struct Placement {
  std::string backend;
  Device device;  // cpu for the host backends, cuda:i for 'cuda'
};
// The placement rules, applied to every tensor argument (name, device) of an op:
//  - 'ref', 'cpu', 'emu' take host tensors ('cpu' or 'emu' memory), never 'cuda' ones;
//  - 'cuda' takes tensors that all live on one CUDA device; that device runs the op;
//  - 'auto' is 'cuda' when any tensor is on a CUDA device, else 'cpu' when usable, else 'ref'.
// Violations throw ERR_LORA_DEVICE naming the argument, its device and what was expected.
Placement resolve_placement(const std::string& backend, const std::vector<std::pair<std::string, Device>>& tensors);

// Reads the backend name at argument i ("auto" when absent), checks that it exists and is usable
// here, that every tensor read through `a` is on a device it takes (resolve_placement), and that it
// implements `op` for these dtypes and sizes; records the op's device in `a` and returns the table.
// Unusable or unsupported -> ERR_LORA_UNSUPPORTED with the backend's reason.
const ops::OpTable& pick_backend(const Args& a, size_t i, const char* op, const std::vector<DType>& dtypes,
                                 const std::vector<int64_t>& sizes);
// The context for running `t` on the device pick_backend chose.
ops::Ctx op_ctx(const Args& a, const ops::OpTable& t);

// The values of a small i32 index tensor (ids, targets, kvLens), readable on the host for the
// binding's range checks: the tensor's own memory when it is host memory, else a copy (one
// synchronous device->host cudaMemcpy of n*4 bytes, ordered after earlier ops on the device).
class HostI32 {
 public:
  HostI32(const Tensor& t, const int32_t* data, int64_t n);
  int32_t operator[](int64_t i) const { return p_[i]; }

 private:
  std::vector<int32_t> copy_;
  const int32_t* p_ = nullptr;
};

// Host tensor check, for bindings that only have host implementations (attentionDecode).
void expect_host(const Tensor& t, const char* name);
void expect_dtype_in(const Tensor& t, std::initializer_list<DType> ok, const char* name);

// A row-major matrix view of t with `cols` columns: last stride 1, leading dims uniformly strided.
struct MatView {
  int64_t rows = 0, cols = 0, ld = 0;
};
MatView matrix_view(const Tensor& t, const char* name);
ops::Mat as_mat(const Tensor& t, const char* name, int64_t rows, int64_t cols);
ops::MutMat as_mut_mat(const Tensor& t, const char* name, int64_t rows, int64_t cols);
// Contiguous f32 (or given dtype) tensor with exactly n elements. These helpers check layout and
// dtype only and return the tensor's pointer, which is a device pointer for a 'cuda' tensor; the
// device of every tensor is checked against the backend by pick_backend.
float* f32_data(const Tensor& t, const char* name, int64_t numel);
const int32_t* i32_data(const Tensor& t, const char* name, int64_t numel);
// A dropout from arguments i (p in [0, 1], default 0), i + 1 (seed) and i + 2 (offset).
ops::Dropout read_dropout(const Args& a, size_t i);
// The keep-mask words of n elements (relu bits): i64, contiguous, exactly ceil(n/64) of them.
uint64_t* bits_data(const Tensor& t, const char* name, int64_t n);
// A linear weight [N, K]: f32/f16/bf16, or i8/int4/nf4 with scales.
ops::Weight as_weight(const Tensor& t, const char* name);

// Byte range covered by a tensor's elements.
// Row-strided views (narrowed columns of a wider matrix) also carry their row pitch, width and
// row count, so that two column slices of one buffer are not mistaken for overlapping.
struct Span {
  const char* name;
  uintptr_t lo, hi;
  uintptr_t pitch = 0, width = 0, rows = 0;
};
Span span_of(const Tensor& t, const char* name);
// Throws when an output overlaps any other argument. `inplace_ok` lists input names an output may
// be exactly equal to (same start and extent).
void check_no_alias(const std::vector<Span>& outputs, const std::vector<Span>& inputs,
                    const std::vector<std::pair<const char*, const char*>>& inplace_ok = {});

}  // namespace lora::binding
