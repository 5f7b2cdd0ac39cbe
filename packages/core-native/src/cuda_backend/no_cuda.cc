// Linked when the addon is built without the CUDA backend (nvcc absent or LORA_CUDA=off).
#include "../runtime/device_registry.h"
#include "../runtime/errors.h"

namespace lora {

CudaStatus cuda_status() {
  CudaStatus s;
  s.built = false;
  s.reason = cuda_unavailable_reason();
  return s;
}

std::string cuda_unavailable_reason() {
  return "this binary was built without the CUDA backend (nvcc was not found at build time, or LORA_CUDA=off)";
}

CachingAllocator* cuda_allocator(int) { return nullptr; }

void* cuda_stream(int) {
  fail(LORA_ERR_DEVICE, "device", "CUDA unavailable: " + cuda_unavailable_reason());
}

void cuda_copy(void*, const void*, size_t, int) {
  fail(LORA_ERR_DEVICE, "device", "CUDA unavailable: " + cuda_unavailable_reason());
}

}  // namespace lora
