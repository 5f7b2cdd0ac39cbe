// A tensor: dtype, shape, strides (in elements) and an offset into a reference-counted storage
// block owned by a device's caching allocator. Quantized weights (int8 with per-row scales,
// int4/nf4 with per-block scales) carry their f32 scales in a second storage.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "dtype.h"

namespace lora {

class Storage {
 public:
  Storage(Device device, size_t bytes);  // allocates through allocator_for(device)
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Device device_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;        // requested
  size_t block_bytes_ = 0;  // what the allocator handed out
};

using Shape = std::vector<int64_t>;

// Largest rank and element count accepted anywhere; larger values are caller bugs.
constexpr int kMaxRank = 8;
constexpr int64_t kMaxNumel = int64_t(1) << 40;

struct Tensor {
  DType dtype = DType::F32;
  Shape shape;
  Shape strides;  // in elements; packed 4-bit tensors are always contiguous
  int64_t offset = 0;
  std::shared_ptr<Storage> storage;
  // Quantization metadata (empty for plain tensors).
  std::shared_ptr<Storage> scales;  // f32: one per row (int8) or per block (int4/nf4)
  int64_t block_size = 0;           // elements per scale for int4/nf4 (e.g. 64)

  Device device() const { return storage ? storage->device() : Device{}; }
  int64_t numel() const;
  int rank() const { return static_cast<int>(shape.size()); }
  bool is_contiguous() const;
  size_t nbytes() const;  // bytes of the elements (not of the scales)
  void* data() const;     // first element (respects offset; packed types must have offset 0)
  template <typename T> T* data_as() const { return static_cast<T*>(data()); }
  const float* scales_data() const { return scales ? static_cast<const float*>(scales->data()) : nullptr; }
  int64_t num_scales() const { return scales ? static_cast<int64_t>(scales->bytes() / 4) : 0; }

  // Allocates a contiguous tensor. Validates rank, sizes and overflow; throws lora::Error.
  static Tensor empty(DType dtype, const Shape& shape, Device device);
  static Shape contiguous_strides(const Shape& shape);
};

// Checks a shape given by a caller: rank <= kMaxRank, dims >= 0, numel <= kMaxNumel.
void check_shape(const Shape& shape, const std::string& arg);
std::string shape_str(const Shape& shape);

// Copies raw bytes between tensors' memory on any pair of devices (host<->cuda goes through the
// CUDA backend). Both ranges must be fully inside their storages.
void copy_bytes(Device dst_dev, void* dst, Device src_dev, const void* src, size_t bytes);

}  // namespace lora
