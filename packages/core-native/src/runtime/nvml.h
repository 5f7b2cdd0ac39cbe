// GPU utilisation through NVML, for the bench. libnvidia-ml.so.1 is opened at run time with
// dlopen (the addon has no link-time dependency on it, so it loads on machines without a driver);
// a background native thread samples "GPU busy %" and "memory access %" (nvmlUtilization_t:
// the percentage of the last sample period during which a kernel ran / device memory was read
// or written) and the device memory in use. Without NVML every entry reports the reason and does
// nothing; nothing here aborts.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lora {

struct NvmlInfo {
  bool available = false;
  std::string reason;        // "NVML unavailable: <why>" when not available
  std::string driver_version;
  int device_count = 0;
  int device_index = -1;     // the NVML index sampled (the GPU that CUDA calls device 0, matched by PCI bus id)
  std::string device_name;
};

struct NvmlSample {
  double t_ms = 0;            // since nvml_start
  unsigned gpu_util_pct = 0;  // nvmlUtilization_t.gpu
  unsigned mem_access_pct = 0;  // nvmlUtilization_t.memory
  uint64_t mem_used_bytes = 0;  // nvmlMemory_t.used (0 when the query failed)
};

// Loads and initialises NVML on first call (thread-safe); the result is cached.
NvmlInfo nvml_info();
// Starts sampling every interval_ms on a background thread; a sampler already running is stopped
// and its samples dropped. Returns false with *reason set when NVML is unavailable.
bool nvml_start(int interval_ms, std::string* reason);
// Stops the sampler (joining its thread) and returns its samples, oldest first; empty when it was
// not running.
std::vector<NvmlSample> nvml_stop();
bool nvml_running();

}  // namespace lora
