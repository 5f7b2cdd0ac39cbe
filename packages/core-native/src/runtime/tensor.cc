#include "tensor.h"

#include <cstring>

#include "allocator.h"
#include "device_registry.h"
#include "errors.h"

namespace lora {

Storage::Storage(Device device, size_t bytes) : device_(device), bytes_(bytes) {
  ptr_ = allocator_for(device).allocate(bytes, &block_bytes_);
}

Storage::~Storage() {
  // The allocator outlives every storage (function-local statics are destroyed last, and CUDA
  // allocators are never destroyed), so releasing here is always safe.
  allocator_for(device_).release(ptr_, block_bytes_, bytes_);
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape Tensor::contiguous_strides(const Shape& shape) {
  Shape s(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    acc *= shape[i] > 0 ? shape[i] : 1;
  }
  return s;
}

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != acc) return false;
    acc *= shape[i];
  }
  return true;
}

size_t Tensor::nbytes() const {
  size_t b = 0;
  dtype_bytes(dtype, numel(), &b);
  return b;
}

void* Tensor::data() const {
  if (!storage) return nullptr;
  const int64_t byte_off = offset * dtype_bits(dtype) / 8;
  return static_cast<char*>(storage->data()) + byte_off;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void check_shape(const Shape& shape, const std::string& arg) {
  if (shape.size() > static_cast<size_t>(kMaxRank)) {
    fail(LORA_ERR_SHAPE, arg, "rank " + std::to_string(shape.size()) + " exceeds the maximum of " + std::to_string(kMaxRank));
  }
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(LORA_ERR_SHAPE, arg, "dimensions must be >= 0, got " + shape_str(shape));
    if (d > 0 && n > kMaxNumel / d) fail(LORA_ERR_SHAPE, arg, "too many elements in " + shape_str(shape));
    n *= d;
  }
}

Tensor Tensor::empty(DType dtype, const Shape& shape, Device device) {
  check_shape(shape, "shape");
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = contiguous_strides(shape);
  size_t bytes = 0;
  if (!dtype_bytes(dtype, t.numel(), &bytes)) fail(LORA_ERR_SHAPE, "shape", "byte size overflows");
  t.storage = std::make_shared<Storage>(device, bytes);
  return t;
}

void copy_bytes(Device dst_dev, void* dst, Device src_dev, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_host_memory() && src_dev.is_host_memory()) {
    std::memmove(dst, src, bytes);
  } else if (!dst_dev.is_host_memory() && src_dev.is_host_memory()) {
    cuda_copy(dst, src, bytes, 0);
  } else if (dst_dev.is_host_memory()) {
    cuda_copy(dst, src, bytes, 1);
  } else {
    cuda_copy(dst, src, bytes, 2);
  }
}

}  // namespace lora
