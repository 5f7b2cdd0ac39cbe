// The `emu` backend: the CUDA kernels of cuda/kernels compiled by the host compiler against the
// emulator (cuda/emu) and run on the CPU. Emulator failures (barrier divergence, bad warp masks,
// deadlocks, traps) become lora::Error ERR_LORA_EMU; launcher validation errors become
// ERR_LORA_INVALID_ARG.
#include "backends_gpu.h"
#include "kernel_table.h"

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

Support emu_supports(const std::string& op, const std::vector<DType>& dtypes, const std::vector<int64_t>& shape) {
  return kemu::table::supports(op, dtypes, shape);
}

namespace T = ::lora::kemu::table;

}  // namespace

const OpTable& emu_ops() {
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
