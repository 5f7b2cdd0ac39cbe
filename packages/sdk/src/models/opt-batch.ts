// OPT's block over a ragged batch (models/batch-step.ts): generate()'s layer order (opt-block.ts)
// with the batch's segmented linears and each row's attention over its own KV cache. Both layouts:
// pre-LN, and opt-350m's post-LN with project_in/project_out.
import type { NativeTensor } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import type { RaggedBatch, RaggedBlock } from './batch-step.js';
import { LN_EPS, type ModelWeights } from './opt-block.js';

export function optRaggedBlock(c: OptConfig, w: ModelWeights): RaggedBlock {
  const C = c.hiddenSize;
  const H = c.numAttentionHeads;
  const D = c.headDim;
  return {
    embed(b: RaggedBatch, x: NativeTensor): void {
      const k = b.kernels;
      if (w.projIn) {
        const e = b.tmp(b.M, c.wordEmbedProjDim);
        k.embedding(b.ids, w.embed, e);
        k.linear(e, w.projIn, undefined, x);
        const p = b.tmp(b.M, C);
        k.embedding(b.posIds, w.pos, p);
        k.add(x, p, x);
      } else {
        k.embedding(b.ids, w.embed, x, { ids: b.posIds, table: w.pos });
      }
    },
    layer(b: RaggedBatch, i: number, x: NativeTensor, out: NativeTensor): void {
      const k = b.kernels;
      const l = w.layers[i];
      const M = b.M;
      const pre = c.doLayerNormBefore;
      const ln = b.scratch('ln', M, C);
      const mean = b.scratch('mean', M);
      const rstd = b.scratch('rstd', M);
      const qkv = b.scratch('qkv', M, 3 * C);
      const att = b.scratch('att', M, C);
      const proj = b.scratch('proj', M, C);
      const sum = b.scratch('sum', M, C);
      const h1 = b.scratch('h1', M, c.ffnDim);
      if (pre) k.layerNorm(x, l.ln1G, l.ln1B, LN_EPS, ln, mean, rstd);
      b.linear(i, 'qkv', pre ? ln : x, l.qkvW, l.qkvB, qkv);
      b.attend(i, b.cols(qkv, 0, C), b.cols(qkv, C, C), b.cols(qkv, 2 * C, C), H, D, att);
      b.linear(i, 'out_proj', att, l.outW, l.outB, proj);
      k.add(x, proj, sum);
      const mid = pre ? sum : ln;
      if (pre) k.layerNorm(sum, l.ln2G, l.ln2B, LN_EPS, ln, mean, rstd);
      else k.layerNorm(sum, l.ln1G, l.ln1B, LN_EPS, ln, mean, rstd);
      b.linear(i, 'fc1', ln, l.fc1W, l.fc1B, h1);
      k.relu(h1, h1);
      b.linear(i, 'fc2', h1, l.fc2W, l.fc2B, proj);
      if (pre) {
        k.add(mid, proj, out);
      } else {
        k.add(mid, proj, sum);
        k.layerNorm(sum, l.ln2G, l.ln2B, LN_EPS, out, mean, rstd);
      }
    },
  };
}
