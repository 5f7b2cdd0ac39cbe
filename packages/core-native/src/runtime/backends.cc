#include "backends.h"

#include "cpu_features.h"
#include "device_registry.h"

namespace lora {

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> out;
  out.push_back({"ref", true, true, ""});

  const CpuFeatures& f = cpu_features();
  BackendInfo cpu{"cpu", true, f.has_avx512_backend(), ""};
  if (!cpu.usable) {
    std::string missing;
    auto need = [&](bool ok, const char* n) { if (!ok) missing += missing.empty() ? n : std::string(", ") + n; };
    need(f.avx512f, "avx512f"); need(f.avx512bw, "avx512bw"); need(f.avx512vl, "avx512vl");
    need(f.avx512dq, "avx512dq"); need(f.avx512_bf16, "avx512_bf16"); need(f.avx512_vnni, "avx512_vnni");
    need(f.fma, "fma"); need(f.os_avx512, "OS support for AVX-512 state");
    cpu.reason = "CPU lacks " + missing + " (the scalar reference is used instead)";
  }
  out.push_back(cpu);

#ifdef LORA_HAS_EMU
  out.push_back({"emu", true, true, ""});
#else
  out.push_back({"emu", false, false, "the CUDA emulator was not compiled into this binary"});
#endif

  const CudaStatus cs = cuda_status();
  out.push_back({"cuda", cs.built, cs.usable, cs.usable ? "" : "CUDA unavailable: " + cs.reason});
  return out;
}

bool backend_usable(const std::string& name, std::string* reason) {
  for (const BackendInfo& b : list_backends()) {
    if (b.name == name) {
      if (reason) *reason = b.reason;
      return b.usable;
    }
  }
  if (reason) *reason = "unknown backend '" + name + "' (known: ref, cpu, emu, cuda)";
  return false;
}

}  // namespace lora
