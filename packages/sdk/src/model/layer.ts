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
import type { Kernels } from './kernels.js';
import type { LoraAdapter, LoraModule } from './lora.js';
import type { LayerWeights } from './weights.js';
import type { LayerCache, Workspace } from './workspace.js';

export const LN_EPS = 1e-5;

/** Seeds for the dropout sites of one layer in one step (0 = no dropout). */
export interface LayerDropout {
  seed: number;
  residualP: number;
  layer: number;
}

// Each dropout site gets its own stretch of the Philox counter space.
const SITE_STRIDE = 2 ** 36;
const site = (d: LayerDropout, s: number) => (d.layer * 8 + s) * SITE_STRIDE;
// The residual dropout of site s (undefined when off); its backward is the same mask on the grad.
const residualDrop = (d: LayerDropout | undefined, s: number) => (d && d.residualP > 0 ? { p: d.residualP, seed: d.seed, offset: site(d, s) } : undefined);

function loraArg(lora: LoraAdapter | undefined, m: LoraModule | undefined, xa: NativeTensor | undefined, d: LayerDropout | undefined, s: number) {
  if (!lora || !m || !xa) return undefined;
  return { spec: lora.spec(m, d ? { seed: d.seed, offset: site(d, s) } : undefined), xa };
}

export function layerForward(
  k: Kernels, c: OptConfig, w: LayerWeights, lora: LoraAdapter | undefined, li: number,
  x: LayerCache, ws: Workspace, out: NativeTensor, drop: LayerDropout | undefined,
): void {
  const shape = { B: ws.B, T: ws.T, H: c.numAttentionHeads, D: c.headDim };
  const l = lora?.layers[li];
  const pre = c.doLayerNormBefore;
  const attnIn = pre ? x.ln1Y : x.xIn;
  if (pre) k.layerNorm(x.xIn, w.ln1G, w.ln1B, LN_EPS, x.ln1Y, x.ln1Mean, x.ln1Rstd);
  // Under autocast q/k/v are kept in bf16 - the linear rounds its f32 sums once - and attended to
  // as those values (the attention kernels read bf16 q/k/v directly).
  k.linear(attnIn, w.qkvW, w.qkvB, x.qkv, loraArg(lora, l?.qkv, x.xaQkv, drop, 0));
  k.attention(x.qkv, ws.mask, shape, 1 / Math.sqrt(c.headDim), x.o, x.lse);
  // out_proj, its dropout and the residual add: one pass when out_proj has no LoRA branch.
  if (l?.out_proj) {
    const proj = ws.proj!;
    const d = residualDrop(drop, 2);
    k.linear(x.o, w.outW, w.outB, proj, loraArg(lora, l.out_proj, x.xaOut, drop, 1));
    if (d) k.dropout(proj, d, proj);
    k.add(x.xIn, proj, x.sum1);
  } else {
    k.linearResidual(x.o, w.outW, w.outB, x.sum1, x.xIn, residualDrop(drop, 2));
  }
  const ffnIn = pre ? x.ln2Y! : x.ln1Y;
  if (pre) k.layerNorm(x.sum1, w.ln2G, w.ln2B, LN_EPS, x.ln2Y!, x.ln2Mean, x.ln2Rstd);
  else k.layerNorm(x.sum1, w.ln1G, w.ln1B, LN_EPS, x.ln1Y, x.ln1Mean, x.ln1Rstd);
  // fc1 + ReLU in one pass when fc1 has no LoRA branch; h1 is bf16 under autocast (what fc2
  // would round it to anyway; relu commutes with that rounding).
  if (l?.fc1) {
    k.linear(ffnIn, w.fc1W, w.fc1B, x.h1, loraArg(lora, l.fc1, x.xaFc1, drop, 3));
    k.reluMask(x.h1, x.h1, x.h1Bits);
  } else {
    k.linearRelu(ffnIn, w.fc1W, w.fc1B, x.h1, x.h1Bits);
  }
  // fc2, its dropout and the residual add (likewise).
  const residual = pre ? x.sum1 : x.ln1Y;
  const s2 = pre ? out : x.sum2!;
  if (l?.fc2) {
    const proj = ws.proj!;
    const d = residualDrop(drop, 5);
    k.linear(x.h1, w.fc2W, w.fc2B, proj, loraArg(lora, l.fc2, x.xaFc2, drop, 4));
    if (d) k.dropout(proj, d, proj);
    k.add(residual, proj, s2);
  } else {
    k.linearResidual(x.h1, w.fc2W, w.fc2B, s2, residual, residualDrop(drop, 5));
  }
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
  // Without an fc2 LoRA branch, fc2's input grad and the ReLU backward are one product (dH1 in
  // h1's dtype and memory: bf16 under autocast, which fc1's backward rounds it to anyway).
  if (l?.fc2) {
    k.linearBackward(dMlp, x.h1, w.fc2W, ws.dH1, false, withGrads(l.fc2, x.xaFc2, 4));
    k.reluMaskBackward(x.h1Bits, ws.dH1, ws.dH1);
  } else {
    k.linearBackwardMasked(dMlp, w.fc2W, ws.dH1, x.h1Bits);
  }
  const ffnIn = pre ? x.ln2Y! : x.ln1Y;
  // dS1: grad at the first residual sum. Post-LN: the FFN input's grad plus the residual path
  // from s2, as fc1's input grad accumulated onto dS2 (dS2's last use), then ln1's backward - into
  // dx when there is one, so the qkv backward can accumulate onto it below.
  let dS1 = dOut;
  if (pre) {
    const dF = dMlp;
    k.linearBackward(ws.dH1, ffnIn, w.fc1W, dF, false, withGrads(l?.fc1, x.xaFc1, 3));
    k.layerNormBackward(dF, x.sum1, w.ln2G, x.ln2Mean, x.ln2Rstd, dS1);
    k.add(dS1, dS2, dS1);
  } else {
    k.linearBackward(ws.dH1, ffnIn, w.fc1W, dS2, true, withGrads(l?.fc1, x.xaFc1, 3));
    if (dx) dS1 = dx;
    k.layerNormBackward(dS2, x.sum1, w.ln1G, x.ln1Mean, x.ln1Rstd, dS1);
  }
  // Attention branch: dS1 -> (dropout) -> out_proj -> attention -> qkv.
  const dProj = ws.dTmp;
  const d2 = residualDrop(drop, 2);
  if (d2) k.dropout(dS1, d2, dProj);
  else k.scale(dS1, 1, dProj);
  const dO = ws.dTmp2;
  k.linearBackward(dProj, x.o, w.outW, dO, false, withGrads(l?.out_proj, x.xaOut, 1));
  k.attentionBackward(x.qkv, ws.mask, shape, 1 / Math.sqrt(c.headDim), x.oKept ? x.o : null, x.lse, dO, ws.dQkv);
  const attnIn = pre ? x.ln1Y : x.xIn;
  if (!dx) {
    // First layer: only the LoRA grads are wanted.
    k.linearBackward(ws.dQkv, attnIn, w.qkvW, undefined, false, withGrads(l?.qkv, x.xaQkv, 0));
    return;
  }
  if (pre) {
    const dA = ws.dTmp;
    k.linearBackward(ws.dQkv, attnIn, w.qkvW, dA, false, withGrads(l?.qkv, x.xaQkv, 0));
    k.layerNormBackward(dA, x.xIn, w.ln1G, x.ln1Mean, x.ln1Rstd, dx);
    k.add(dx, dS1, dx);
  } else {
    // dx holds dS1 (the residual path): the qkv input grad adds onto it.
    k.linearBackward(ws.dQkv, attnIn, w.qkvW, dx, true, withGrads(l?.qkv, x.xaQkv, 0));
  }
}
