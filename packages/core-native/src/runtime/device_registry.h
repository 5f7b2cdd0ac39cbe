// The bridge between the runtime and the CUDA backend. When the addon is built without CUDA these
// resolve to "not available" with the reason; with CUDA they are implemented in cuda_backend/.
#pragma once
#include <cstddef>
#include <string>

#include "allocator.h"

namespace lora {

struct CudaStatus {
  bool built = false;        // the CUDA backend was compiled into this binary
  bool usable = false;       // a driver and at least one device were found
  std::string reason;        // why not usable (empty when usable)
  int runtime_version = 0;   // e.g. 13000
  int driver_version = 0;    // 0 when no driver
  int device_count = 0;
  std::string device_name;   // of device 0
  size_t total_memory = 0;   // of device 0, bytes
  int sm_major = 0, sm_minor = 0;
  std::string pci_bus_id;    // of device 0, e.g. "0000:3B:00.0" (how NVML finds the same GPU)
};

CudaStatus cuda_status();
std::string cuda_unavailable_reason();
// nullptr when CUDA is not usable or the index is out of range.
CachingAllocator* cuda_allocator(int index);
// The stream every op on CUDA device `index` runs on: one per device, created on first use with
// cudaStreamDefault flags (so the legacy-default-stream copies of cuda_copy order against it) and
// never destroyed. Throws ERR_LORA_DEVICE when CUDA is not usable or the index is out of range.
void* cuda_stream(int index);
// Copies between host and a CUDA device (kind: 0 = host->device, 1 = device->host, 2 = device->device).
void cuda_copy(void* dst, const void* src, size_t bytes, int kind);

}  // namespace lora
