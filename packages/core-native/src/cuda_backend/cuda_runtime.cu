// The CUDA side of the runtime: device discovery, device memory and copies. cudart is linked
// statically; it loads the driver (libcuda.so) at run time, so a machine with no driver or no GPU
// gets "CUDA unavailable: <reason>" here instead of a failure to load the addon.
#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../runtime/device_registry.h"
#include "../runtime/errors.h"

namespace lora {

namespace {

std::string cuda_error(const char* call, cudaError_t e, const char* file, int line) {
  return std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " + cudaGetErrorString(e);
}

#define LORA_CUDA_CHECK(call)                                                          \
  do {                                                                                 \
    cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) fail(LORA_ERR_CUDA, "", cuda_error(#call, e_, __FILE__, __LINE__)); \
  } while (0)

CudaStatus probe() {
  CudaStatus s;
  s.built = true;
  cudaRuntimeGetVersion(&s.runtime_version);
  cudaError_t e = cudaDriverGetVersion(&s.driver_version);
  if (e != cudaSuccess || s.driver_version == 0) {
    s.reason = e != cudaSuccess ? std::string("no CUDA driver: ") + cudaGetErrorString(e)
                                : "no CUDA driver found (libcuda.so.1 could not be loaded)";
    cudaGetLastError();
    return s;
  }
  e = cudaGetDeviceCount(&s.device_count);
  if (e != cudaSuccess || s.device_count == 0) {
    s.reason = std::string("no usable GPU: ") + (e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
    s.device_count = 0;
    cudaGetLastError();
    return s;
  }
  cudaDeviceProp prop{};
  e = cudaGetDeviceProperties(&prop, 0);
  if (e != cudaSuccess) {
    s.reason = std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorString(e);
    return s;
  }
  s.device_name = prop.name;
  s.total_memory = prop.totalGlobalMem;
  s.sm_major = prop.major;
  s.sm_minor = prop.minor;
  char bus[32] = {0};
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, 0) == cudaSuccess) s.pci_bus_id = bus;
  cudaGetLastError();
  if (prop.major < 8) {
    s.reason = "GPU " + s.device_name + " has compute capability " + std::to_string(prop.major) + "." +
               std::to_string(prop.minor) + "; the kernels need sm_80 or newer (bf16 tensor cores)";
    return s;
  }
  s.usable = true;
  return s;
}

const CudaStatus& status_once() {
  static const CudaStatus s = probe();
  return s;
}

struct DeviceMemory final : RawMemory {
  int index;
  explicit DeviceMemory(int i) : index(i) {}
  void* alloc(size_t bytes, const char** err) override {
    void* p = nullptr;
    if (cudaSetDevice(index) != cudaSuccess) { *err = "cudaSetDevice failed"; cudaGetLastError(); return nullptr; }
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) { *err = cudaGetErrorString(e); cudaGetLastError(); return nullptr; }
    return p;
  }
  void free(void* p, size_t) override { cudaSetDevice(index); cudaFree(p); }
};

}  // namespace

CudaStatus cuda_status() { return status_once(); }

std::string cuda_unavailable_reason() { return status_once().usable ? "" : status_once().reason; }

CachingAllocator* cuda_allocator(int index) {
  const CudaStatus& s = status_once();
  if (!s.usable || index < 0 || index >= s.device_count) return nullptr;
  static std::mutex mu;
  // Never destroyed: device memory must not be freed after the CUDA runtime has shut down.
  static std::vector<CachingAllocator*>* allocators = new std::vector<CachingAllocator*>();
  std::lock_guard<std::mutex> lock(mu);
  if (allocators->empty()) {
    for (int i = 0; i < s.device_count; ++i) allocators->push_back(new CachingAllocator(new DeviceMemory(i)));
  }
  return (*allocators)[index];
}

void* cuda_stream(int index) {
  const CudaStatus& s = status_once();
  if (!s.usable) fail(LORA_ERR_DEVICE, "device", "CUDA unavailable: " + s.reason);
  if (index < 0 || index >= s.device_count) {
    fail(LORA_ERR_DEVICE, "device", "cuda:" + std::to_string(index) + " does not exist (" + std::to_string(s.device_count) + " device(s))");
  }
  static std::mutex mu;
  static std::vector<cudaStream_t>* streams = new std::vector<cudaStream_t>();  // never destroyed, like the allocators
  std::lock_guard<std::mutex> lock(mu);
  if (streams->empty()) streams->assign(static_cast<size_t>(s.device_count), nullptr);
  cudaStream_t& st = (*streams)[static_cast<size_t>(index)];
  if (!st) {
    LORA_CUDA_CHECK(cudaSetDevice(index));
    LORA_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamDefault));
  }
  return st;
}

void cuda_copy(void* dst, const void* src, size_t bytes, int kind) {
  const cudaMemcpyKind k = kind == 0 ? cudaMemcpyHostToDevice : kind == 1 ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
  LORA_CUDA_CHECK(cudaMemcpy(dst, src, bytes, k));
}

}  // namespace lora
