// The reference backend's op table: it runs every op on host memory, for every dtype the
// binding accepts, so supports() always says yes.
#include "ref.h"

namespace lora::ops {

namespace {
Support ref_supports(const std::string&, const std::vector<DType>&, const std::vector<int64_t>&) { return {}; }
}  // namespace

const OpTable& ref_ops() {
  static const OpTable t = {
      "ref", &ref_supports, &ref::matmul_xwt, &ref::matmul_dyw, &ref::matmul_dw, &ref::quantize, &ref::dequantize,
      &ref::lora_fwd, &ref::lora_bwd, &ref::embedding_fwd, &ref::embedding_bwd, &ref::layernorm_fwd,
      &ref::layernorm_bwd, &ref::attn_fwd, &ref::attn_bwd, &ref::relu, &ref::relu_bwd, &ref::add, &ref::scale,
      &ref::cast, &ref::dropout, &ref::cross_entropy, &ref::adamw, &ref::sum_squares,
  };
  return t;
}

}  // namespace lora::ops
