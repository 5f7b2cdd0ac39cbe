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

// The device of the op running on this thread (set by guarded), for the scratch hooks.
thread_local int tl_device = 0;

// Launcher scratch through the device's caching allocator (so allocated/peak include it).
void* scratch_alloc(size_t bytes, size_t* block) {
  return allocator_for(Device{DeviceKind::CUDA, tl_device}).allocate(bytes, block);
}
void scratch_release(void* p, size_t block, size_t bytes) {
  allocator_for(Device{DeviceKind::CUDA, tl_device}).release(p, block, bytes);
}

template <class P, void (*F)(const Ctx&, const P&)>
void guarded(const Ctx& c, const P& p) {
  try {
    // Ops run on the device their tensors live on (set by the binding: context_for(t, device)).
    if (c.device >= 0) {
      LORA_CUDA_CHECK(cudaSetDevice(c.device));
      tl_device = c.device;
    } else {
      LORA_CUDA_CHECK(cudaGetDevice(&tl_device));
    }
    F(c, p);
  } catch (const ::lora::Error&) {
    throw;
  } catch (const ::lora::kgpu::KernelArgError& e) {
    throw ::lora::Error(LORA_ERR_INVALID_ARG, e.what());
  } catch (const ::lora::cuda::CudaError& e) {
    throw ::lora::Error(LORA_ERR_CUDA, e.what());
  }
}

Support cuda_supports(const std::string& op, const std::vector<DType>& dtypes, const std::vector<int64_t>& shape) {
  return kgpu::table::supports(op, dtypes, shape);
}

namespace T = ::lora::kgpu::table;

bool install_scratch_hooks() {
  kgpu::ScratchHooks& h = kgpu::scratch_hooks();
  h.alloc = &scratch_alloc;
  h.release = &scratch_release;
  return true;
}

const OpTable& cuda_ops() {
  static const bool hooks = install_scratch_hooks();
  (void)hooks;
  static const OpTable t = {
      "cuda",
      &cuda_supports,
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
