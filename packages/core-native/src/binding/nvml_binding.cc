// NVML utilisation sampling for the bench (../runtime/nvml.h).
//   nvmlInfo() -> { available, reason, driverVersion, deviceCount, deviceIndex, deviceName }
//   nvmlStart(intervalMs) -> { started, reason }   (started: false, with the reason, without NVML)
//   nvmlStop() -> [{ tMs, gpuUtilPct, memAccessPct, memUsedBytes }]   ([] when not running)
//   nvmlRunning() -> boolean
// The sampler is process-wide (one native thread shared by every worker thread of the process).
#include "../runtime/nvml.h"
#include "args.h"
#include "errors_js.h"
#include "registry.h"

namespace lora::binding {

namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const NvmlInfo n = nvml_info();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("available", n.available);
    o.Set("reason", n.reason);
    o.Set("driverVersion", n.driver_version);
    o.Set("deviceCount", n.device_count);
    o.Set("deviceIndex", n.device_index);
    o.Set("deviceName", n.device_name);
    return o;
  });
}

Napi::Value Start(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "nvmlStart");
    const int64_t interval = a.integer_or(0, "intervalMs", 1, 60000, 100);
    std::string reason;
    const bool started = nvml_start(static_cast<int>(interval), &reason);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("started", started);
    o.Set("reason", reason);
    return o;
  });
}

Napi::Value Stop(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const std::vector<NvmlSample> s = nvml_stop();
    Napi::Array arr = Napi::Array::New(info.Env(), s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("tMs", s[i].t_ms);
      o.Set("gpuUtilPct", s[i].gpu_util_pct);
      o.Set("memAccessPct", s[i].mem_access_pct);
      o.Set("memUsedBytes", static_cast<double>(s[i].mem_used_bytes));
      arr.Set(static_cast<uint32_t>(i), o);
    }
    return arr;
  });
}

Napi::Value Running(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), nvml_running()); });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("nvmlInfo", Napi::Function::New<Info>(env, "nvmlInfo"));
  exports.Set("nvmlStart", Napi::Function::New<Start>(env, "nvmlStart"));
  exports.Set("nvmlStop", Napi::Function::New<Stop>(env, "nvmlStop"));
  exports.Set("nvmlRunning", Napi::Function::New<Running>(env, "nvmlRunning"));
}

const Registrar reg("nvml", &Register);

}  // namespace

}  // namespace lora::binding
