// Incremental (KV-cached) attention for generation. Not part of the OpTable: a training step never
// needs it, and only the host backends implement it (the binding says so for emu/cuda).
//
// Shapes: B batch, Tq new tokens per row, S cache capacity, H heads, D head dim, C = H*D.
//   q, k, v   [B, Tq, C] rows with leading dimensions ldq/ldk/ldv (column slices of one qkv buffer)
//   k_cache, v_cache [B, S, C] contiguous; rows [0, past) hold earlier tokens
// The op first writes k, v into cache rows [past, past + Tq), then for new token i computes
//   o[b, i] = softmax(scale · q[b, i] · k_cache[b, 0 .. past + i]ᵀ) · v_cache[b, 0 .. past + i]
// (causal within the new block), skipping cache rows whose key_mask entry is 0 (padding) when a mask
// [B, S] is given. A query with no visible key outputs zeros. o [B, Tq, C] is overwritten.
#pragma once
#include <cstdint>

namespace lora::ops {

struct AttnDecode {
  int64_t B, Tq, S, H, D, past;
  float scale;
  const float* q; int64_t ldq;
  const float* k; int64_t ldk;
  const float* v; int64_t ldv;
  float* k_cache; float* v_cache;
  const int32_t* key_mask;  // [B, S] or null
  float* o; int64_t ldo;
};

void attn_decode_ref(const AttnDecode& p);

}  // namespace lora::ops
