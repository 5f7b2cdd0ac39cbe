// Loads lora_mpi.so from the addon's own folder (or $LORA_MPI_PLUGIN) with RTLD_GLOBAL: Open MPI's
// components are themselves dlopen()ed by libmpi and resolve its symbols globally.
#include "dist_comm.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace lora::dist {

namespace {

std::string addon_dir() {
  Dl_info di{};
  if (!dladdr(reinterpret_cast<void*>(&addon_dir), &di) || !di.dli_fname) return ".";
  std::string p = di.dli_fname;
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

int env_int(const char* a, const char* b) {
  const char* v = std::getenv(a);
  if (!v) v = std::getenv(b);
  if (!v || !*v) return -1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (*end || n < 0 || n > 1 << 20) ? -1 : static_cast<int>(n);
}

struct Loaded {
  const LoraCommApi* api = nullptr;
  std::string path;
  std::string why;
};

const Loaded& load() {
  static Loaded l;
  static std::once_flag once;
  std::call_once(once, [] {
#ifndef LORA_HAS_MPI_PLUGIN
    l.why = "MPI unavailable: the addon was built without MPI (CMake found no MPI; install libopenmpi-dev and rebuild)";
    return;
#else
    const char* env = std::getenv("LORA_MPI_PLUGIN");
    l.path = env && *env ? env : addon_dir() + "/lora_mpi.so";
    void* h = dlopen(l.path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
      const char* e = dlerror();
      const std::string detail = e ? e : "unknown error";
      const bool no_libmpi = detail.find("libmpi") != std::string::npos && detail.find("No such file") != std::string::npos;
      l.why = "MPI unavailable: cannot load " + l.path + ": " + detail + (no_libmpi ? " (install Open MPI's runtime: openmpi-bin)" : "");
      return;
    }
    auto fn = reinterpret_cast<LoraCommApiFn>(dlsym(h, "lora_comm_api"));
    const LoraCommApi* a = fn ? fn() : nullptr;
    if (!a || a->abi_version != LORA_COMM_ABI) {
      l.why = "MPI unavailable: " + l.path + " is not this addon's plug-in (ABI mismatch)";
      return;
    }
    l.api = a;
#endif
  });
  return l;
}

}  // namespace

const LoraCommApi* api(std::string* why) {
  const Loaded& l = load();
  if (!l.api && why) *why = l.why;
  return l.api;
}

Info info() {
  Info i;
#ifdef LORA_HAS_MPI_PLUGIN
  i.built = true;
#endif
  const Loaded& l = load();
  i.usable = l.api != nullptr;
  i.reason = l.why;
  i.plugin_path = l.path;
  i.nccl_built = l.api && l.api->nccl_init;
  if (!i.nccl_built) {
    i.nccl_reason = l.api ? "NCCL unavailable: the MPI plug-in was built without NCCL (no nccl.h/libnccl found at build time, or no CUDA toolkit)"
                          : "NCCL unavailable: it is bootstrapped over MPI, which is not usable";
  }
  i.env_rank = env_int("OMPI_COMM_WORLD_RANK", "PMI_RANK");
  i.env_size = env_int("OMPI_COMM_WORLD_SIZE", "PMI_SIZE");
  if (i.env_size < 0) i.env_size = 0;
  return i;
}

}  // namespace lora::dist
