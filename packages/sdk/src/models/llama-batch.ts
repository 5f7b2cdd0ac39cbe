// The Llama-shaped block (llama, qwen2, qwen3) over a ragged batch (models/batch-step.ts):
// generate()'s layer order (llama.ts) with the batch's segmented linears, rotary positions per row
// (each row's past + t) and each row's grouped-query attention over its own KV cache.
import type { NativeTensor } from '@lora/core-native';

import type { RaggedBatch, RaggedBlock } from './batch-step.js';
import type { LlamaConfig } from './llama-config.js';
import type { LlamaWeights } from './llama.js';

export function llamaRaggedBlock(c: LlamaConfig, w: LlamaWeights): RaggedBlock {
  const C = c.hiddenSize;
  const F = c.intermediateSize;
  const H = c.numAttentionHeads;
  const Hkv = c.numKeyValueHeads;
  const D = c.headDim;
  const eps = c.rmsNormEps;
  return {
    embed(b: RaggedBatch, x: NativeTensor): void {
      b.kernels.embedding(b.ids, w.embed, x);
    },
    layer(b: RaggedBatch, i: number, x: NativeTensor, out: NativeTensor): void {
      const k = b.kernels;
      const l = w.layers[i];
      const M = b.M;
      const a = b.scratch('a', M, C);
      const rstd = b.scratch('rstd', M);
      const q = b.scratch('q', M, H * D);
      const kk = b.scratch('k', M, Hkv * D);
      const v = b.scratch('v', M, Hkv * D);
      const o = b.scratch('o', M, H * D);
      const proj = b.scratch('proj', M, C);
      const s1 = b.scratch('s1', M, C);
      const gateUp = b.scratch('gateUp', M, 2 * F);
      const h = b.scratch('h', M, F);
      k.rmsNorm(x, l.ln1W, eps, a, rstd);
      const qPre = c.qkNorm ? b.scratch('qPre', M, H * D) : q;
      const kPre = c.qkNorm ? b.scratch('kPre', M, Hkv * D) : kk;
      b.linear(i, 'q_proj', a, l.qW, l.qB, qPre);
      b.linear(i, 'k_proj', a, l.kW, l.kB, kPre);
      b.linear(i, 'v_proj', a, l.vW, l.vB, v);
      if (c.qkNorm) {
        k.rmsNorm(qPre, l.qNormW, eps, q, b.scratch('qRstd', M * H), D);
        k.rmsNorm(kPre, l.kNormW, eps, kk, b.scratch('kRstd', M * Hkv), D);
      }
      k.rope(q, q, b.posIds, w.invFreq, H, false);
      k.rope(kk, kk, b.posIds, w.invFreq, Hkv, false);
      b.attend(i, q, kk, v, H, D, o);
      b.linear(i, 'o_proj', o, l.oW, l.oB, proj);
      k.add(x, proj, s1);
      k.rmsNorm(s1, l.ln2W, eps, a, rstd);
      b.linear(i, 'gate_up', a, l.gateUpW, l.gateUpB, gateUp);
      k.swiGlu(b.cols(gateUp, 0, F), b.cols(gateUp, F, F), h);
      b.linear(i, 'down_proj', h, l.downW, l.downB, proj);
      k.add(s1, proj, out);
    },
  };
}
