// The cpu backend's op table (AVX-512 kernels in avx512/, threads from thread_pool.h).
#include "../ops/ops.h"
#include "avx512/cpu_kernels.h"

namespace lora::ops {

namespace {
Support cpu_supports(const std::string& op, const std::vector<DType>& dtypes, const std::vector<int64_t>&) {
  return cpu::supports(op, dtypes);
}
}  // namespace

const OpTable& cpu_ops() {
  static const OpTable t = {
      "cpu", &cpu_supports, &cpu::matmul_xwt, &cpu::matmul_dyw, &cpu::matmul_dw, &cpu::quantize, &cpu::dequantize,
      &cpu::lora_fwd, &cpu::lora_bwd, &cpu::embedding_fwd, &cpu::embedding_bwd, &cpu::layernorm_fwd,
      &cpu::layernorm_bwd, &cpu::attn_fwd, &cpu::attn_bwd, &cpu::relu, &cpu::relu_bwd, &cpu::add, &cpu::scale,
      &cpu::cast, &cpu::dropout, &cpu::cross_entropy, &cpu::adamw, &cpu::sum_squares,
  };
  return t;
}

}  // namespace lora::ops
