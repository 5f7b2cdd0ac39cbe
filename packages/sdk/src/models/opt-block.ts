// One OPT decoder layer, forward and backward side by side (llm.c style). Shape letters: B batch,
// T sequence, M = B·T rows, C hidden, F ffn, H heads, D = C/H.
//
// pre-LN (opt-125m, 1.3b, ...):            post-LN (opt-350m):
//   a   = LN1(x)                              a   = x
//   s1  = x + drop(out_proj(attn(qkv(a))))    s1  = x + drop(out_proj(attn(qkv(a))))
//   f   = LN2(s1)                             m   = LN1(s1);  f = m
//   out = s1 + drop(fc2(relu(fc1(f))))        s2  = m + drop(fc2(relu(fc1(f))));  out = LN2(s2)
//
// Backward contract: takes dOut (grad w.r.t. the layer output), writes dX (grad w.r.t. the layer
// input, overwritten) unless dx is omitted (first layer); LoRA grads accumulate.
import type { NativeTensor } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import type { BaseDType } from '../model/device.js';
import { residualDrop, site, type LayerDropout } from '../model/dropout.js';
import { linear, linearGrad, type Kernels, type KvCache } from '../model/kernels.js';
import type { LoraAdapter, LoraModule } from '../model/lora.js';
import type { LayerCache, Workspace } from './opt-workspace.js';

export const LN_EPS = 1e-5;

/**
 * One layer's frozen weights, by the roles of OPT's parameter table. q/k/v are stacked into one
 * [3C, C] weight so the three projections run as one product (and one fused LoRA over G = 3
 * groups). Linear weights take the base dtype; biases and layer norms stay f32.
 */
export interface LayerWeights {
  qkvW: NativeTensor; // [3C, C] base dtype: rows q | k | v
  qkvB: NativeTensor; // [3C] f32 (zeros without enable_bias)
  outW: NativeTensor; // [C, C]
  outB: NativeTensor;
  fc1W: NativeTensor; // [F, C]
  fc1B: NativeTensor;
  fc2W: NativeTensor; // [C, F]
  fc2B: NativeTensor;
  ln1G?: NativeTensor; // self_attn_layer_norm
  ln1B?: NativeTensor;
  ln2G?: NativeTensor; // final_layer_norm (of the layer)
  ln2B?: NativeTensor;
}

/**
 * The whole base. The token table is the tied lm_head (also gathered from when it is f32 or bf16;
 * a quantised head keeps an f32 copy for the gather).
 */
export interface ModelWeights {
  embed: NativeTensor; // [V, E] for the input gather: lmHead itself when f32/bf16, else an f32 copy
  lmHead: NativeTensor; // [V, E] base dtype (tied to embed), for the output projection
  pos: NativeTensor; // [P + 2, C] f32
  projIn?: NativeTensor; // [C, E]
  projOut?: NativeTensor; // [E, C]
  finalLnG?: NativeTensor;
  finalLnB?: NativeTensor;
  layers: LayerWeights[];
  dtype: BaseDType;
}

function loraArg(lora: LoraAdapter | undefined, m: LoraModule | undefined, xa: NativeTensor | undefined, d: LayerDropout | undefined, s: number) {
  if (!lora || !m || !xa) return undefined;
  return { spec: lora.spec(m, d ? { seed: d.seed, offset: site(d, s) } : undefined), xa };
}

/**
 * The layer's forward. With `kv` (decoding) the attention attends over the layer's cached keys and
 * values from position kv.past on, appending this call's; the rest is the same block.
 */
export function layerForward(
  k: Kernels, c: OptConfig, w: LayerWeights, lora: LoraAdapter | undefined, li: number,
  x: LayerCache, ws: Workspace, out: NativeTensor, drop: LayerDropout | undefined, kv?: KvCache,
): void {
  const shape = { B: ws.B, T: ws.T, H: c.numAttentionHeads, D: c.headDim };
  const l = lora?.layers[li];
  const pre = c.doLayerNormBefore;
  const attnIn = pre ? x.ln1Y : x.xIn;
  if (pre) k.layerNorm(x.xIn, w.ln1G, w.ln1B, LN_EPS, x.ln1Y, x.ln1Mean, x.ln1Rstd);
  // Under autocast q/k/v are kept in bf16 - the linear rounds its f32 sums once - and attended to
  // as those values (the attention kernels read bf16 q/k/v directly).
  linear(k, attnIn, w.qkvW, w.qkvB, x.qkv, { lora: loraArg(lora, l?.qkv, x.xaQkv, drop, 0) });
  k.attention(x.qkv, ws.mask, shape, 1 / Math.sqrt(c.headDim), x.o, x.lse, kv);
  // out_proj, its dropout and the residual add.
  linear(k, x.o, w.outW, w.outB, x.sum1, { lora: loraArg(lora, l?.out_proj, x.xaOut, drop, 1), residual: x.xIn, dropout: residualDrop(drop, 2) });
  const ffnIn = pre ? x.ln2Y! : x.ln1Y;
  if (pre) k.layerNorm(x.sum1, w.ln2G, w.ln2B, LN_EPS, x.ln2Y!, x.ln2Mean, x.ln2Rstd);
  else k.layerNorm(x.sum1, w.ln1G, w.ln1B, LN_EPS, x.ln1Y, x.ln1Mean, x.ln1Rstd);
  // fc1 + ReLU; h1 is bf16 under autocast when no LoRA branch needs it in f32 (what fc2 would
  // round it to anyway; relu commutes with that rounding).
  linear(k, ffnIn, w.fc1W, w.fc1B, x.h1, { lora: loraArg(lora, l?.fc1, x.xaFc1, drop, 3), relu: { bits: x.h1Bits } });
  // fc2, its dropout and the residual add.
  const residual = pre ? x.sum1 : x.ln1Y;
  const s2 = pre ? out : x.sum2!;
  linear(k, x.h1, w.fc2W, w.fc2B, s2, { lora: loraArg(lora, l?.fc2, x.xaFc2, drop, 4), residual, dropout: residualDrop(drop, 5) });
  if (!pre) k.layerNorm(x.sum2!, w.ln2G, w.ln2B, LN_EPS, out, x.ln2Mean, x.ln2Rstd);
}

/**
 * dOut is consumed (used as scratch). dx may be undefined for the first layer. out is the layer's
 * forward output (the next layer's input), for a post-LN final_layer_norm backward from it.
 */
export function layerBackward(
  k: Kernels, c: OptConfig, w: LayerWeights, lora: LoraAdapter | undefined, li: number,
  x: LayerCache, ws: Workspace, out: NativeTensor, dOut: NativeTensor, dx: NativeTensor | undefined, drop: LayerDropout | undefined,
): void {
  const shape = { B: ws.B, T: ws.T, H: c.numAttentionHeads, D: c.headDim };
  const l = lora?.layers[li];
  const pre = c.doLayerNormBefore;
  const withGrads = (m: LoraModule | undefined, xa: NativeTensor | undefined, s: number) => {
    const a = loraArg(lora, m, xa, drop, s);
    return a && m ? { ...a, da: m.da, db: m.db } : undefined;
  };
  // dS2: grad at the second residual sum (pre-LN: that is the output itself).
  const dS2 = ws.dTmp;
  if (pre) k.scale(dOut, 1, dS2);
  else if (ws.ln2FromOutput) k.layerNormBackwardFromOutput(dOut, out, w.ln2G!, w.ln2B, x.ln2Rstd, dS2);
  else k.layerNormBackward(dOut, x.sum2!, w.ln2G, x.ln2Mean, x.ln2Rstd, dS2);
  // MLP branch: dS2 -> (dropout) -> fc2 -> relu -> fc1 -> dF.
  const dMlp = ws.dTmp2;
  const d5 = residualDrop(drop, 5);
  if (d5) k.dropout(dS2, d5, dMlp);
  else k.scale(dS2, 1, dMlp);
  // fc2's input grad with the ReLU backward (dH1 in h1's dtype and memory: bf16 under autocast,
  // which fc1's backward rounds it to anyway).
  linearGrad(k, dMlp, x.h1, w.fc2W, ws.dH1, { lora: withGrads(l?.fc2, x.xaFc2, 4), reluBits: x.h1Bits });
  const ffnIn = pre ? x.ln2Y! : x.ln1Y;
  // dS1: grad at the first residual sum. Post-LN: the FFN input's grad plus the residual path
  // from s2, as fc1's input grad accumulated onto dS2 (dS2's last use), then ln1's backward - into
  // dx when there is one, so the qkv backward can accumulate onto it below.
  let dS1 = dOut;
  if (pre) {
    const dF = dMlp;
    linearGrad(k, ws.dH1, ffnIn, w.fc1W, dF, { lora: withGrads(l?.fc1, x.xaFc1, 3) });
    k.layerNormBackward(dF, x.sum1, w.ln2G, x.ln2Mean, x.ln2Rstd, dS1);
    k.add(dS1, dS2, dS1);
  } else {
    linearGrad(k, ws.dH1, ffnIn, w.fc1W, dS2, { lora: withGrads(l?.fc1, x.xaFc1, 3), accumulate: true });
    if (dx) dS1 = dx;
    k.layerNormBackward(dS2, x.sum1, w.ln1G, x.ln1Mean, x.ln1Rstd, dS1);
  }
  // Attention branch: dS1 -> (dropout) -> out_proj -> attention -> qkv.
  const dProj = ws.dTmp;
  const d2 = residualDrop(drop, 2);
  if (d2) k.dropout(dS1, d2, dProj);
  else k.scale(dS1, 1, dProj);
  const dO = ws.dTmp2;
  linearGrad(k, dProj, x.o, w.outW, dO, { lora: withGrads(l?.out_proj, x.xaOut, 1) });
  k.attentionBackward(x.qkv, ws.mask, shape, 1 / Math.sqrt(c.headDim), x.plan.keepO ? x.o : null, x.lse, dO, ws.dQkv);
  const attnIn = pre ? x.ln1Y : x.xIn;
  if (!dx) {
    // First layer: only the LoRA grads are wanted.
    linearGrad(k, ws.dQkv, attnIn, w.qkvW, undefined, { lora: withGrads(l?.qkv, x.xaQkv, 0) });
    return;
  }
  if (pre) {
    const dA = ws.dTmp;
    linearGrad(k, ws.dQkv, attnIn, w.qkvW, dA, { lora: withGrads(l?.qkv, x.xaQkv, 0) });
    k.layerNormBackward(dA, x.xIn, w.ln1G, x.ln1Mean, x.ln1Rstd, dx);
    k.add(dx, dS1, dx);
  } else {
    // dx holds dS1 (the residual path): the qkv input grad adds onto it.
    linearGrad(k, ws.dQkv, attnIn, w.qkvW, dx, { lora: withGrads(l?.qkv, x.xaQkv, 0), accumulate: true });
  }
}
