// The `emu` backend: the CUDA kernels of cuda/kernels compiled by the host compiler against the
// emulator (cuda/emu) and run on the CPU. Emulator failures (barrier divergence, bad warp masks,
// deadlocks, traps) become lora::Error ERR_LORA_EMU; launcher validation errors become
// ERR_LORA_INVALID_ARG.
#include "backends_gpu.h"
#include "kernel_table.h"

#include "../runtime/allocator.h"
#include "../runtime/errors.h"

namespace lora::ops {

namespace {

// Emulator failures (and any other exception of a kernel launcher) as lora::Error.
struct EmuGuard {
  template <class Call>
  static void run(const Ctx&, Call&& call) {
    try {
      call();
    } catch (const ::lora::Error&) {
      throw;
    } catch (const ::lora::emu::EmuError& e) {
      throw ::lora::Error(LORA_ERR_EMU, std::string("CUDA emulator: ") + e.what());
    } catch (const ::lora::kemu::KernelArgError& e) {
      throw ::lora::Error(LORA_ERR_INVALID_ARG, e.what());
    } catch (const ::lora::cuda::CudaError& e) {
      throw ::lora::Error(LORA_ERR_EMU, std::string("CUDA emulator: ") + e.what());
    } catch (const std::exception& e) {
      throw ::lora::Error(LORA_ERR_EMU, std::string("CUDA emulator: ") + e.what());
    }
  }
};

// Launcher scratch through the 'emu' caching allocator, as the cuda backend does with the GPU's,
// so memoryStats('emu') counts it and the hook path is exercised without a GPU. Sanitizer builds
// keep exact-size emulator allocations instead (the caching allocator rounds blocks up to 512 B,
// which would hide a scratch overrun from ASan).
[[maybe_unused]] void* scratch_alloc(size_t bytes, size_t* block) { return allocator_for(Device{DeviceKind::EMU, 0}).allocate(bytes, block); }
[[maybe_unused]] void scratch_release(void* p, size_t block, size_t bytes) { allocator_for(Device{DeviceKind::EMU, 0}).release(p, block, bytes); }

bool install_scratch_hooks() {
#if !defined(__SANITIZE_ADDRESS__)
  kemu::ScratchHooks& h = kemu::scratch_hooks();
  h.alloc = &scratch_alloc;
  h.release = &scratch_release;
#endif
  return true;
}

}  // namespace

const OpTable& emu_ops() {
  static const bool hooks = install_scratch_hooks();
  (void)hooks;
  static const OpTable t = kemu::table::make_op_table<EmuGuard>("emu");
  return t;
}

}  // namespace lora::ops
