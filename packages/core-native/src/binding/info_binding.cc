// Introspection for the loader, `lora env` and benchmarks: build facts, CPU features, backends,
// CUDA status and per-device allocator statistics.
#include <napi.h>

#include "../runtime/allocator.h"
#include "../runtime/backends.h"
#include "../runtime/cpu_features.h"
#include "../runtime/device_registry.h"
#include "args.h"
#include "errors_js.h"
#include "registry.h"

namespace lora::binding {

namespace {

#ifndef LORA_CUDA_ARCHS_STR
#define LORA_CUDA_ARCHS_STR ""
#endif

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#ifdef LORA_HAS_CUDA
  o.Set("cuda", true);
#else
  o.Set("cuda", false);
#endif
#ifdef LORA_HAS_EMU
  o.Set("emu", true);
#else
  o.Set("emu", false);
#endif
#ifdef LORA_SANITIZE
  o.Set("sanitize", true);
#else
  o.Set("sanitize", false);
#endif
  o.Set("cudaArchs", LORA_CUDA_ARCHS_STR);
  o.Set("compiler", __VERSION__);
  o.Set("napiVersion", NAPI_VERSION);
#ifdef NDEBUG
  o.Set("buildType", "Release");
#else
  o.Set("buildType", "Debug");
#endif
  return o;
}

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  Napi::Object o = Napi::Object::New(env);
  o.Set("vendor", f.vendor);
  o.Set("model", f.model);
  o.Set("logicalCores", f.logical_cores);
  Napi::Object feat = Napi::Object::New(env);
  feat.Set("avx2", f.avx2);
  feat.Set("fma", f.fma);
  feat.Set("f16c", f.f16c);
  feat.Set("avx512f", f.avx512f);
  feat.Set("avx512bw", f.avx512bw);
  feat.Set("avx512vl", f.avx512vl);
  feat.Set("avx512dq", f.avx512dq);
  feat.Set("avx512bf16", f.avx512_bf16);
  feat.Set("avx512vnni", f.avx512_vnni);
  feat.Set("osAvx512", f.os_avx512);
  o.Set("features", feat);
  return o;
}

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const CudaStatus s = cuda_status();
    Napi::Object o = Napi::Object::New(env);
    o.Set("built", s.built);
    o.Set("usable", s.usable);
    o.Set("reason", s.reason);
    o.Set("runtimeVersion", s.runtime_version);
    o.Set("driverVersion", s.driver_version);
    o.Set("deviceCount", s.device_count);
    o.Set("deviceName", s.device_name);
    o.Set("totalMemory", static_cast<double>(s.total_memory));
    o.Set("computeCapability", s.sm_major ? std::to_string(s.sm_major) + "." + std::to_string(s.sm_minor) : "");
    o.Set("pciBusId", s.pci_bus_id);
    return o;
  });
}

Napi::Value Backends(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const auto list = list_backends();
    Napi::Array a = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", list[i].name);
      o.Set("built", list[i].built);
      o.Set("usable", list[i].usable);
      o.Set("reason", list[i].reason);
      a.Set(static_cast<uint32_t>(i), o);
    }
    return a;
  });
}

Napi::Value MemoryStatsJs(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "memoryStats");
    const Device d = a.device_or(0, "device", Device{});
    const MemoryStats s = allocator_for(d).stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("device", device_name(d));
    o.Set("allocated", static_cast<double>(s.allocated));
    o.Set("reserved", static_cast<double>(s.reserved));
    o.Set("peakAllocated", static_cast<double>(s.peak_allocated));
    o.Set("peakReserved", static_cast<double>(s.peak_reserved));
    o.Set("requested", static_cast<double>(s.requested));
    o.Set("numAllocs", static_cast<double>(s.num_allocs));
    o.Set("numRawAllocs", static_cast<double>(s.num_raw_allocs));
    o.Set("cacheHits", static_cast<double>(s.cache_hits));
    return o;
  });
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "resetPeakMemory");
    allocator_for(a.device_or(0, "device", Device{})).reset_peak();
    return info.Env().Undefined();
  });
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "emptyCache");
    allocator_for(a.device_or(0, "device", Device{})).empty_cache();
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New<BuildInfo>(env, "buildInfo"));
  exports.Set("cpuInfo", Napi::Function::New<CpuInfo>(env, "cpuInfo"));
  exports.Set("cudaInfo", Napi::Function::New<CudaInfo>(env, "cudaInfo"));
  exports.Set("backends", Napi::Function::New<Backends>(env, "backends"));
  exports.Set("memoryStats", Napi::Function::New<MemoryStatsJs>(env, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New<ResetPeakMemory>(env, "resetPeakMemory"));
  exports.Set("emptyCache", Napi::Function::New<EmptyCache>(env, "emptyCache"));
  Napi::Object codes = Napi::Object::New(env);
  for (const char* c : {LORA_ERR_INVALID_ARG, LORA_ERR_DTYPE, LORA_ERR_SHAPE, LORA_ERR_DEVICE, LORA_ERR_DISPOSED,
                        LORA_ERR_OOM, LORA_ERR_UNSUPPORTED, LORA_ERR_CUDA, LORA_ERR_EMU, LORA_ERR_INTERNAL}) {
    codes.Set(c, c);
  }
  exports.Set("errorCodes", codes);
}

const Registrar reg("info", &Register);

}  // namespace

}  // namespace lora::binding
