// The `cuda` backend: the kernels of cuda/kernels compiled by nvcc (sm_80/89/90), behind the same
// OpTable as the emulator build (../emu_backend/kernel_table.h). Op pointers are device memory.
// CUDA errors become lora::Error ERR_LORA_CUDA (call, file:line, cudaGetErrorString); launcher
// validation errors ERR_LORA_INVALID_ARG.
#include "../emu_backend/backends_gpu.h"
#include "../emu_backend/kernel_table.h"

#include "../runtime/allocator.h"
#include "../runtime/device_registry.h"
#include "../runtime/errors.h"

namespace lora::ops {

namespace {

// The device of the op running on this thread (set by CudaGuard), for the scratch hooks.
thread_local int tl_device = 0;

// Launcher scratch through the device's caching allocator (so allocated/peak include it).
void* scratch_alloc(size_t bytes, size_t* block) {
  return allocator_for(Device{DeviceKind::CUDA, tl_device}).allocate(bytes, block);
}
void scratch_release(void* p, size_t block, size_t bytes) {
  allocator_for(Device{DeviceKind::CUDA, tl_device}).release(p, block, bytes);
}

// Ops run on the device their tensors live on (set by the binding: context_for(t, device));
// CUDA errors and launcher validation errors become lora::Error.
struct CudaGuard {
  template <class Call>
  static void run(const Ctx& c, Call&& call) {
    try {
      if (c.device >= 0) {
        LORA_CUDA_CHECK(cudaSetDevice(c.device));
        tl_device = c.device;
      } else {
        LORA_CUDA_CHECK(cudaGetDevice(&tl_device));
      }
      call();
    } catch (const ::lora::Error&) {
      throw;
    } catch (const ::lora::kgpu::KernelArgError& e) {
      throw ::lora::Error(LORA_ERR_INVALID_ARG, e.what());
    } catch (const ::lora::cuda::CudaError& e) {
      throw ::lora::Error(LORA_ERR_CUDA, e.what());
    }
  }
};

bool install_scratch_hooks() {
  kgpu::ScratchHooks& h = kgpu::scratch_hooks();
  h.alloc = &scratch_alloc;
  h.release = &scratch_release;
  return true;
}

const OpTable& cuda_ops() {
  static const bool hooks = install_scratch_hooks();
  (void)hooks;
  static const OpTable t = kgpu::table::make_op_table<CudaGuard>("cuda");
  return t;
}

}  // namespace

const OpTable* cuda_ops_table(std::string* reason) {
  const CudaStatus s = cuda_status();
  if (!s.usable) {
    if (reason) *reason = "CUDA unavailable: " + s.reason;
    return nullptr;
  }
  // The op bindings check that every tensor of a 'cuda' op lives on one CUDA device and pass
  // that device (and its stream) in the Ctx; pointers in the op structs are device pointers.
  return &cuda_ops();
}

}  // namespace lora::ops
