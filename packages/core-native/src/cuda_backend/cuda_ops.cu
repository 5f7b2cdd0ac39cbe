// The `cuda` backend: the kernels of cuda/kernels compiled by nvcc (sm_80/89/90), behind the same
// OpTable as the emulator build (../emu_backend/kernel_table.h). Op pointers are device memory.
// CUDA errors become lora::Error ERR_LORA_CUDA (call, file:line, cudaGetErrorString); launcher
// validation errors ERR_LORA_INVALID_ARG.
#include "../emu_backend/backends_gpu.h"
#include "../emu_backend/kernel_table.h"

#include "../runtime/device_registry.h"
#include "../runtime/errors.h"

namespace lora::ops {

namespace {

template <class P, void (*F)(const Ctx&, const P&)>
void guarded(const Ctx& c, const P& p) {
  try {
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

const OpTable& cuda_ops() {
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
  // The op bindings validate and pass host tensors ('cpu'/'emu'); these kernels need device
  // pointers. Until the bindings take 'cuda' tensors, refuse rather than hand host memory to a GPU.
  if (reason) *reason = "the op bindings pass host tensors and the cuda kernels need device memory (device-tensor op bindings are not wired yet)";
  (void)&cuda_ops;
  return nullptr;
}

}  // namespace lora::ops
