// Backend lookup by name for the op bindings.
#include "../runtime/backends.h"
#include "../runtime/cpu_features.h"
#include "../ops/ops.h"
#include "thread_pool.h"
#include "../emu_backend/backends_gpu.h"
#include "../runtime/device_registry.h"

namespace lora::ops {

const OpTable* find_backend(const std::string& name, std::string* reason) {
  if (name == "ref") return &ref_ops();
  if (name == "cpu") {
    if (!cpu_features().has_avx512_backend()) {
      backend_usable("cpu", reason);
      return nullptr;
    }
    return &cpu_ops();
  }
  if (name == "emu") {
#ifdef LORA_HAS_EMU
    return &emu_ops();
#else
    backend_usable("emu", reason);
    return nullptr;
#endif
  }
  if (name == "cuda") {
#ifdef LORA_HAS_CUDA
    return cuda_ops_table(reason);
#else
    backend_usable("cuda", reason);
    return nullptr;
#endif
  }
  *reason = "unknown backend '" + name + "' (known: ref, cpu, emu, cuda)";
  return nullptr;
}

Ctx context_for(const OpTable& t) {
  Ctx c;
  if (&t == &cpu_ops()) c.pool = &cpu_pool();
  return c;
}

Ctx context_for(const OpTable& t, Device d) {
  Ctx c = context_for(t);
  if (d.kind == DeviceKind::CUDA && std::string(t.name) == "cuda") {
    c.device = d.index;
    c.stream = cuda_stream(d.index);
  }
  return c;
}

}  // namespace lora::ops
