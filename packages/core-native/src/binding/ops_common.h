// Shared validation for op bindings: backend choice + honest supports(), host-memory and dtype
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

// Host (cpu device) tensor check.
void expect_host(const Tensor& t, const char* name);
void expect_dtype_in(const Tensor& t, std::initializer_list<DType> ok, const char* name);

// A row-major matrix view of t with `cols` columns: last stride 1, leading dims uniformly strided.
struct MatView {
  int64_t rows = 0, cols = 0, ld = 0;
};
MatView matrix_view(const Tensor& t, const char* name);
ops::Mat as_mat(const Tensor& t, const char* name, int64_t rows, int64_t cols);
ops::MutMat as_mut_mat(const Tensor& t, const char* name, int64_t rows, int64_t cols);
// Contiguous f32 (or given dtype) tensor with exactly n elements.
float* f32_data(const Tensor& t, const char* name, int64_t numel);
const int32_t* i32_data(const Tensor& t, const char* name, int64_t numel);
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
