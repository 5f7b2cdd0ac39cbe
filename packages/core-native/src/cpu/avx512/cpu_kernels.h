// The cpu backend: AVX-512 (F/BW/VL/DQ + BF16 + VNNI) kernels, multi-threaded with cpu_pool().
// Only reachable when cpu_features().has_avx512_backend() (see find_backend).
#pragma once
#include "../../ops/ops.h"

namespace lora::ops::cpu {

Support supports(const std::string& op, const std::vector<DType>& dtypes);

void matmul_xwt(const Ctx&, const MatmulXWt&);
void matmul_dyw(const Ctx&, const MatmulDYW&);
void matmul_dw(const Ctx&, const MatmulDW&);
void quantize(const Ctx&, const Quantize&);
void dequantize(const Ctx&, const Dequantize&);
void lora_fwd(const Ctx&, const LoraFwd&);
void lora_bwd(const Ctx&, const LoraBwd&);
void embedding_fwd(const Ctx&, const EmbeddingFwd&);
void embedding_bwd(const Ctx&, const EmbeddingBwd&);
void layernorm_fwd(const Ctx&, const LayerNormFwd&);
void layernorm_bwd(const Ctx&, const LayerNormBwd&);
void attn_fwd(const Ctx&, const AttnFwd&);
void attn_bwd(const Ctx&, const AttnBwd&);
void relu(const Ctx&, const Relu&);
void relu_bwd(const Ctx&, const ReluBwd&);
void add(const Ctx&, const Add&);
void scale(const Ctx&, const Scale&);
void cast(const Ctx&, const Cast&);
void dropout(const Ctx&, const DropoutOp&);
void cross_entropy(const Ctx&, const CrossEntropy&);
void adamw(const Ctx&, const AdamW&);
void sum_squares(const Ctx&, const SumSquares&);

}  // namespace lora::ops::cpu
