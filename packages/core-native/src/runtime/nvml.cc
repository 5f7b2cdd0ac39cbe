#include "nvml.h"

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "device_registry.h"

namespace lora {

namespace {

// The few NVML types and entry points used here, declared from the NVML API reference (nvml.h is
// not needed to build): handles are opaque pointers, every call returns nvmlReturn_t (0 = success).
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
constexpr nvmlReturn_t NVML_SUCCESS = 0;

struct Nvml {
  void* lib = nullptr;
  nvmlReturn_t (*init)() = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*driver_version)(char*, unsigned int) = nullptr;
  nvmlReturn_t (*count)(unsigned int*) = nullptr;
  nvmlReturn_t (*by_index)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*by_pci)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*index)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlDevice_t device = nullptr;
  NvmlInfo info;
};

std::string nvml_error(const Nvml& n, const char* call, nvmlReturn_t r) {
  const char* s = n.error_string ? n.error_string(r) : nullptr;
  return std::string(call) + " returned " + std::to_string(r) + (s ? std::string(" (") + s + ")" : "");
}

template <class F>
bool load_symbol(Nvml& n, F*& fn, const char* name, std::string* why) {
  fn = reinterpret_cast<F*>(dlsym(n.lib, name));
  if (!fn) *why = std::string("symbol ") + name + " not found in the NVML library";
  return fn != nullptr;
}

// Loads NVML and picks the device to sample. LORA_NVML_LIBRARY overrides the library path (tests
// point it at a missing file or a library without the symbols to exercise the failure paths).
Nvml* load() {
  Nvml* n = new Nvml();  // never freed: the sampler thread may outlive static destruction order
  auto unavailable = [&](const std::string& why) {
    n->info.available = false;
    n->info.reason = "NVML unavailable: " + why;
    return n;
  };
  const char* env = std::getenv("LORA_NVML_LIBRARY");
  const std::string path = env && *env ? env : "libnvidia-ml.so.1";
  n->lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!n->lib) {
    const char* e = dlerror();
    return unavailable("could not load " + path + (e ? std::string(": ") + e : std::string()) + " (no NVIDIA driver installed?)");
  }
  std::string why;
  if (!load_symbol(*n, n->init, "nvmlInit_v2", &why) || !load_symbol(*n, n->error_string, "nvmlErrorString", &why) ||
      !load_symbol(*n, n->count, "nvmlDeviceGetCount_v2", &why) || !load_symbol(*n, n->by_index, "nvmlDeviceGetHandleByIndex_v2", &why) ||
      !load_symbol(*n, n->utilization, "nvmlDeviceGetUtilizationRates", &why) || !load_symbol(*n, n->memory, "nvmlDeviceGetMemoryInfo", &why)) {
    return unavailable(why);
  }
  // Optional entry points.
  n->driver_version = reinterpret_cast<decltype(n->driver_version)>(dlsym(n->lib, "nvmlSystemGetDriverVersion"));
  n->by_pci = reinterpret_cast<decltype(n->by_pci)>(dlsym(n->lib, "nvmlDeviceGetHandleByPciBusId_v2"));
  n->name = reinterpret_cast<decltype(n->name)>(dlsym(n->lib, "nvmlDeviceGetName"));
  n->index = reinterpret_cast<decltype(n->index)>(dlsym(n->lib, "nvmlDeviceGetIndex"));

  nvmlReturn_t r = n->init();
  if (r != NVML_SUCCESS) return unavailable(nvml_error(*n, "nvmlInit_v2", r));
  if (n->driver_version) {
    char buf[96] = {0};
    if (n->driver_version(buf, sizeof buf) == NVML_SUCCESS) n->info.driver_version = buf;
  }
  unsigned int count = 0;
  r = n->count(&count);
  if (r != NVML_SUCCESS) return unavailable(nvml_error(*n, "nvmlDeviceGetCount_v2", r));
  if (count == 0) return unavailable("no GPU visible to NVML");
  n->info.device_count = static_cast<int>(count);
  // NVML numbers GPUs in PCI order, CUDA (by default) fastest first, and CUDA_VISIBLE_DEVICES
  // hides some from CUDA only: sample the GPU that CUDA calls device 0, found by its PCI bus id.
  const CudaStatus cs = cuda_status();
  if (n->by_pci && !cs.pci_bus_id.empty() && n->by_pci(cs.pci_bus_id.c_str(), &n->device) != NVML_SUCCESS) n->device = nullptr;
  if (!n->device) {
    r = n->by_index(0, &n->device);
    if (r != NVML_SUCCESS) return unavailable(nvml_error(*n, "nvmlDeviceGetHandleByIndex_v2(0)", r));
  }
  unsigned int idx = 0;
  n->info.device_index = n->index && n->index(n->device, &idx) == NVML_SUCCESS ? static_cast<int>(idx) : 0;
  if (n->name) {
    char buf[96] = {0};
    if (n->name(n->device, buf, sizeof buf) == NVML_SUCCESS) n->info.device_name = buf;
  }
  n->info.available = true;
  return n;
}

Nvml& nvml() {
  static Nvml* n = load();
  return *n;
}

class Sampler {
 public:
  ~Sampler() { stop(); }

  bool start(int interval_ms, std::string* reason) {
    Nvml& n = nvml();
    if (!n.info.available) {
      if (reason) *reason = n.info.reason;
      return false;
    }
    stop();
    std::lock_guard<std::mutex> lock(control_);
    {
      std::lock_guard<std::mutex> l(mu_);
      samples_.clear();
      stop_ = false;
    }
    interval_ = std::chrono::milliseconds(interval_ms < 1 ? 1 : interval_ms);
    t0_ = std::chrono::steady_clock::now();
    thread_ = std::thread([this, &n] { run(n); });
    return true;
  }

  std::vector<NvmlSample> stop() {
    std::lock_guard<std::mutex> lock(control_);
    if (!thread_.joinable()) return {};
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::lock_guard<std::mutex> l(mu_);
    std::vector<NvmlSample> out;
    out.swap(samples_);
    return out;
  }

  bool running() {
    std::lock_guard<std::mutex> lock(control_);
    return thread_.joinable();
  }

 private:
  void run(Nvml& n) {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      l.unlock();
      NvmlSample s;
      nvmlUtilization_t u{};
      const bool ok = n.utilization(n.device, &u) == NVML_SUCCESS;
      nvmlMemory_t m{};
      if (n.memory(n.device, &m) == NVML_SUCCESS) s.mem_used_bytes = m.used;
      s.t_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
      s.gpu_util_pct = u.gpu;
      s.mem_access_pct = u.memory;
      l.lock();
      if (ok) samples_.push_back(s);
      cv_.wait_for(l, interval_, [this] { return stop_; });
    }
  }

  std::mutex control_;  // serialises start/stop
  std::mutex mu_;       // guards samples_ and stop_
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<NvmlSample> samples_;
  std::chrono::milliseconds interval_{100};
  std::chrono::steady_clock::time_point t0_;
  std::thread thread_;
};

Sampler& sampler() {
  // A function-local static: destroyed (thread stopped and joined) at unload/exit, so a sampler
  // left running never reaches std::thread's destructor while joinable.
  static Sampler s;
  return s;
}

}  // namespace

NvmlInfo nvml_info() { return nvml().info; }

bool nvml_start(int interval_ms, std::string* reason) { return sampler().start(interval_ms, reason); }

std::vector<NvmlSample> nvml_stop() { return sampler().stop(); }

bool nvml_running() { return sampler().running(); }

}  // namespace lora
