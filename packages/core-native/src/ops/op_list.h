// The op list, written once: X(field, Params, name) for every op of the OpTable, in table order.
// `field` is the OpTable member and each backend's function name, `Params` the op's struct in
// ops.h, `name` the op's name as the bindings ask supports() about it (lib/ops.ts spells it too).
// The OpTable, every backend's declarations and tables, and the cpu backend's known-op list are
// expanded from this macro, so they cannot drift apart: a new op is one line here.
//
// The sites a new op touches (counted on lora_segments, issue 13's goal <= 10), 10 in all:
//   native (7): 1 this list; 2 ops/ops.h (its Params struct, the contract); 3 cpu/ref (reference);
//     4 cpu/avx512 (fast kernel); 5 cuda/kernels/<family>.cuh (the CUDA launcher, nvcc + emu);
//     6 emu_backend/kernel_table.h (the Params -> launcher call, ONE entry for both the emu and the
//     cuda table: emu_ops.cc and cuda_ops.cu hold no per-op line); 7 binding/ops_<family>.cc.
//   SDK (3): 8 packages/core-native/lib/ops.ts (typed wrapper); 9 sdk model/kernels.ts (the Kernels
//     interface); 10 sdk model/bind-kernels.ts (the only SDK file that knows argument order).
// Derived, never edited per op: the OpTable fields, every backend's declarations and tables
// (ref_table.cc, cpu_table.cc, kernel_table.h's make_op_table for emu and cuda) and the cpu
// backend's known-op list. Site 6 stays: folding it into the launcher would make cuda/kernels
// include the addon's ops.h (or take duck-typed structs), which the kernels do not do today.
#pragma once

#define LORA_OP_LIST(X)                           \
  X(matmul_xwt, MatmulXWt, "matmul_xwt")          \
  X(matmul_dyw, MatmulDYW, "matmul_dyw")          \
  X(matmul_dw, MatmulDW, "matmul_dw")             \
  X(quantize, Quantize, "quantize")               \
  X(dequantize, Dequantize, "dequantize")         \
  X(lora_fwd, LoraFwd, "lora_fwd")                \
  X(lora_bwd, LoraBwd, "lora_bwd")                \
  X(lora_segments, LoraSegments, "lora_segments") \
  X(embedding_fwd, EmbeddingFwd, "embedding")     \
  X(embedding_bwd, EmbeddingBwd, "embedding_bwd") \
  X(layernorm_fwd, LayerNormFwd, "layernorm")     \
  X(layernorm_bwd, LayerNormBwd, "layernorm_bwd") \
  X(attn_fwd, AttnFwd, "attention")               \
  X(attn_bwd, AttnBwd, "attention_bwd")           \
  X(attn_ragged, AttnRagged, "attention_ragged") \
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
