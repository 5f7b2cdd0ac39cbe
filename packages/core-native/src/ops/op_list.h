// The op list, written once: X(field, Params, name) for every op of the OpTable, in table order.
// `field` is the OpTable member and each backend's function name, `Params` the op's struct in
// ops.h, `name` the op's name as the bindings ask supports() about it (lib/ops.ts spells it too).
// The OpTable, every backend's declarations and tables, and the cpu backend's known-op list are
// expanded from this macro, so they cannot drift apart: a new op is one line here.
#pragma once

#define LORA_OP_LIST(X)                           \
  X(matmul_xwt, MatmulXWt, "matmul_xwt")          \
  X(matmul_dyw, MatmulDYW, "matmul_dyw")          \
  X(matmul_dw, MatmulDW, "matmul_dw")             \
  X(quantize, Quantize, "quantize")               \
  X(dequantize, Dequantize, "dequantize")         \
  X(lora_fwd, LoraFwd, "lora_fwd")                \
  X(lora_bwd, LoraBwd, "lora_bwd")                \
  X(embedding_fwd, EmbeddingFwd, "embedding")     \
  X(embedding_bwd, EmbeddingBwd, "embedding_bwd") \
  X(layernorm_fwd, LayerNormFwd, "layernorm")     \
  X(layernorm_bwd, LayerNormBwd, "layernorm_bwd") \
  X(attn_fwd, AttnFwd, "attention")               \
  X(attn_bwd, AttnBwd, "attention_bwd")           \
  X(relu, Relu, "relu")                           \
  X(relu_bwd, ReluBwd, "relu_bwd")                \
  X(add, Add, "add")                              \
  X(scale, Scale, "scale")                        \
  X(cast, Cast, "cast")                           \
  X(dropout, DropoutOp, "dropout")                \
  X(cross_entropy, CrossEntropy, "cross_entropy") \
  X(adamw, AdamW, "adamw")                        \
  X(sum_squares, SumSquares, "sum_squares")       \
  X(rmsnorm_fwd, RmsNormFwd, "rmsnorm")           \
  X(rmsnorm_bwd, RmsNormBwd, "rmsnorm_bwd")       \
  X(rope, Rope, "rope")                           \
  X(swiglu, SwiGlu, "swiglu")                     \
  X(swiglu_bwd, SwiGluBwd, "swiglu_bwd")

// Declarations of one backend's functions (inside its namespace): void field(const Ctx&, const Params&);
#define LORA_OP_DECLARE(field, Params, name) void field(const Ctx&, const Params&);
