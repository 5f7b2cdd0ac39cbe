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

template <class P, void (*F)(const Ctx&, const P&)>
void guarded(const Ctx& c, const P& p) {
  try {
    F(c, p);
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

Support emu_supports(const std::string& op, const std::vector<DType>& dtypes, const std::vector<int64_t>& shape) {
  return kemu::table::supports(op, dtypes, shape);
}

namespace T = ::lora::kemu::table;

}  // namespace

const OpTable& emu_ops() {
  static const bool hooks = install_scratch_hooks();
  (void)hooks;
  static const OpTable t = {
      "emu",
      &emu_supports,
      &guarded<MatmulXWt, &T::matmul_xwt>,
      &guarded<MatmulDYW, &T::matmul_dyw>,
      &guarded<MatmulDW, &T::matmul_dw>,
      &guarded<Quantize, &T::quantize>,
      &guarded<Dequantize, &T::dequantize>,
      &guarded<LoraFwd, &T::lora_fwd>,
      &guarded<LoraBwd, &T::lora_bwd>,
      &guarded<EmbeddingFwd, &T::embedding_fwd>,
      &guarded<EmbeddingBwd, &T::embedding_bwd>,
      &guarded<LayerNormFwd, &T::layernorm_fwd>,
      &guarded<LayerNormBwd, &T::layernorm_bwd>,
      &guarded<AttnFwd, &T::attn_fwd>,
      &guarded<AttnBwd, &T::attn_bwd>,
      &guarded<Relu, &T::relu>,
      &guarded<ReluBwd, &T::relu_bwd>,
      &guarded<Add, &T::add>,
      &guarded<Scale, &T::scale>,
      &guarded<Cast, &T::cast>,
      &guarded<DropoutOp, &T::dropout>,
      &guarded<CrossEntropy, &T::cross_entropy>,
      &guarded<AdamW, &T::adamw>,
      &guarded<SumSquares, &T::sum_squares>,
  };
  return t;
}

}  // namespace lora::ops
