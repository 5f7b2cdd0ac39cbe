// Activation buffers for one batch shape, allocated once and reused every step (the native caching
// allocator would make re-allocation cheap too, but reuse keeps peak memory flat and predictable).
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import type { StepWorkspace } from '../model/decoder-lm.js';
import type { LoraAdapter, LoraLayer } from '../model/lora.js';

/**
 * What one layer's forward keeps for its backward, decided here once from the layer's LoRA modules:
 * the workspace allocates by it and the block reads it (see LayerCache for why each is kept).
 */
export interface LayerPlan {
  /** The attention sublayer's layer-norm output per layer (pre-LN: qkv has LoRA; post-LN: it feeds fc1, which has). */
  keepLn1Y: boolean;
  /** Pre-LN: the FFN's layer-norm output per layer (fc1 has LoRA). */
  keepLn2Y: boolean;
  /** The attention output per layer (out_proj has LoRA); else the backward recomputes D from q, k, v, lse. */
  keepO: boolean;
  /** fc1/relu's output per layer (fc2 has LoRA, whose dA reads it). */
  keepH1: boolean;
}

export function planLayer(c: OptConfig, l: LoraLayer | undefined): LayerPlan {
  const pre = c.doLayerNormBefore;
  return {
    keepLn1Y: pre ? l?.qkv !== undefined : l?.fc1 !== undefined,
    keepLn2Y: pre && l?.fc1 !== undefined,
    keepO: l?.out_proj !== undefined,
    keepH1: l?.fc2 !== undefined,
  };
}

/**
 * What one decoder layer's forward keeps for its backward. A frozen linear's backward needs no
 * input (dX = dY·W), so a layer-norm output is kept per layer only when the linear it feeds has a
 * LoRA branch (whose dA needs that input); otherwise it lives in the workspace's shared `lnY`.
 * Under autocast (a bf16 or quantised base) q/k/v are kept in bf16, the values a bf16 linear
 * produces under torch.autocast too, which the attention kernels read directly (widened exactly,
 * f32 math); the q/k/v linear writes them in bf16 directly (its f32 sums rounded once). The
 * attention output is kept (f32) only when out_proj has a LoRA branch (whose dA reads it); else
 * the attention backward computes D = rowsum(dO∘O) itself from q, k, v and lse (holding each key
 * block's P and dP tiles while D sums), 4 MB less per layer at OPT-350m's 4×256 (a bf16 O instead
 * measurably loosened the LoRA grads on the parity fixtures: D cancels against dP).
 */
export interface LayerCache {
  xIn: NativeTensor; // [M, C] layer input (also the attention residual)
  ln1Y: NativeTensor; // [M, C] self_attn_layer_norm output (per layer, or the shared lnY)
  ln1Mean: NativeTensor; // [M]
  ln1Rstd: NativeTensor;
  qkv: NativeTensor; // [M, 3C] (bf16 under autocast)
  xaQkv?: NativeTensor; // [M, 3r] LoRA cache
  o: NativeTensor; // [M, C] attention output (before out_proj): per layer when plan.keepO, else the shared one
  plan: LayerPlan;
  lse: NativeTensor; // [B, H, T]
  xaOut?: NativeTensor;
  sum1: NativeTensor; // [M, C] xIn + drop(out_proj(o))
  ln2Y?: NativeTensor; // [M, C] final_layer_norm output (pre-LN only; per layer, or the shared lnY)
  ln2Mean: NativeTensor;
  ln2Rstd: NativeTensor;
  h1: NativeTensor; // [M, F] relu(fc1(.)) (per layer only when fc2 has LoRA, else the shared h1)
  h1Bits: NativeTensor; // i64 [ceil(M·F/64)] relu's keep mask: all its backward needs
  xaFc1?: NativeTensor;
  xaFc2?: NativeTensor;
  sum2?: NativeTensor; // [M, C] residual sum before the post-LN final_layer_norm (post-LN only; the shared sum2 when its backward runs from the output)
}

export interface Workspace extends StepWorkspace {
  embedOut: NativeTensor; // [M, E]
  posOut: NativeTensor; // [M, C]
  caches: LayerCache[]; // with checkpointing all layers share one cache but own their xIn (= inputs[i])
  // scratch
  lnY: NativeTensor; // [M, C] layer-norm outputs no LoRA branch needs later
  // post-LN: the final_layer_norm backward runs from the layer's output (the next layer's input,
  // kept anyway), so its input sum2 is scratch.
  ln2FromOutput: boolean;
  h1: NativeTensor; // [M, F] fc1/relu output when no fc2 LoRA branch needs it later (bf16 under autocast)
  dTmp: NativeTensor; // [M, C]
  dTmp2: NativeTensor; // [M, C]
  dH1: NativeTensor; // [M, F] (the shared h1, its dtype: a layer's backward no longer needs it)
  dQkv: NativeTensor; // [M, 3C] f32 (backward only; in h1's memory when h1 is f32: dH1 is dead by the attention backward)
}

/**
 * bf16Qkv: keep q/k/v in bf16 (the model's linears autocast to bf16). ln2FromOutput: post-LN
 * layers take the final_layer_norm backward from the output (every gamma of it is nonzero).
 */
export function createWorkspace(
  c: OptConfig, lora: LoraAdapter | undefined, B: number, T: number, device: DeviceName, checkpointing: boolean, bf16Qkv: boolean,
  ln2FromOutput: boolean,
): Workspace {
  const { Tensor } = native();
  const all: NativeTensor[] = [];
  const make = (dtype: 'f32' | 'bf16', shape: number[]) => {
    const t = Tensor.empty(dtype, shape, device);
    all.push(t);
    return t;
  };
  const f32 = (...shape: number[]) => make('f32', shape);
  const i32 = (n: number) => {
    const t = Tensor.empty('i32', [n], device);
    all.push(t);
    return t;
  };
  const bits = (n: number) => {
    const t = Tensor.empty('i64', [Math.ceil(n / 64)], device);
    all.push(t);
    return t;
  };
  const M = B * T;
  const C = c.hiddenSize;
  const F = c.ffnDim;
  const E = c.wordEmbedProjDim;
  const H = c.numAttentionHeads;
  const r = lora?.r ?? 0;
  const pre = c.doLayerNormBefore;
  const lnY = f32(M, C);
  // The shared fc1/relu output (and, in the backward, dH1): bf16 under autocast when fc1 runs as
  // one linear+ReLU product and no fc2 LoRA branch keeps h1 as its input (fc2 reads it rounded to
  // bf16 anyway), else f32 (an fc1 LoRA branch's output goes through the f32 relu op).
  const fc1Lora = lora?.layers.some((l) => l.fc1 !== undefined) ?? false;
  const fc2Lora = lora?.layers.some((l) => l.fc2 !== undefined) ?? false;
  const h1 = make(bf16Qkv && !fc1Lora && !fc2Lora ? 'bf16' : 'f32', [M, F]);
  // [M, n] f32 in the shared h1's memory when it is f32 and fits: for buffers live only while
  // h1/dH1 are dead (the backward's dQkv, after fc1's backward has consumed dH1).
  const inH1 = (n: number) => {
    if (n > F || h1.dtype !== 'f32') return f32(M, n);
    const flat = h1.reshape([M * F]);
    const part = flat.narrow(0, 0, M * n);
    const t = part.reshape([M, n]);
    flat.dispose();
    part.dispose();
    all.push(t);
    return t;
  };
  const oShared = f32(M, C);
  const fromOut = !pre && ln2FromOutput;
  const sum2 = fromOut ? f32(M, C) : undefined;
  const cacheFor = (i: number, xIn: NativeTensor): LayerCache => {
    const l = lora?.layers[i];
    const plan = planLayer(c, l);
    return {
      xIn, plan,
      ln1Y: plan.keepLn1Y ? f32(M, C) : lnY, ln1Mean: f32(M), ln1Rstd: f32(M),
      qkv: make(bf16Qkv ? 'bf16' : 'f32', [M, 3 * C]), xaQkv: l?.qkv ? f32(M, 3 * r) : undefined,
      o: plan.keepO ? f32(M, C) : oShared, lse: f32(B * H * T), xaOut: l?.out_proj ? f32(M, r) : undefined,
      sum1: f32(M, C), ln2Y: pre ? (plan.keepLn2Y ? f32(M, C) : lnY) : undefined, ln2Mean: f32(M), ln2Rstd: f32(M),
      h1: plan.keepH1 ? f32(M, F) : h1, h1Bits: bits(M * F), xaFc1: l?.fc1 ? f32(M, r) : undefined, xaFc2: l?.fc2 ? f32(M, r) : undefined,
      sum2: pre ? undefined : (sum2 ?? f32(M, C)),
    };
  };
  const inputs = Array.from({ length: c.numHiddenLayers }, () => f32(M, C));
  let caches: LayerCache[];
  if (checkpointing) {
    // LoRA modules are the same in every layer, so one scratch cache fits all.
    const shared = cacheFor(0, inputs[0]);
    caches = inputs.map((xIn) => ({ ...shared, xIn }));
  } else {
    caches = inputs.map((xIn, i) => cacheFor(i, xIn));
  }
  return {
    B, T, M,
    ids: i32(M), posIds: i32(M), mask: i32(M), targets: i32(M),
    embedOut: f32(M, E), posOut: f32(M, C),
    caches, inputs, out: f32(M, C), hFinal: f32(M, E), finalMean: f32(M), finalRstd: f32(M), recompute: checkpointing ? f32(M, C) : undefined,
    lnY, h1, ln2FromOutput: fromOut,
    dOut: f32(M, C), dOutB: f32(M, C), dTmp: f32(M, C), dTmp2: f32(M, C), dH1: h1, dQkv: inH1(3 * C), dFinal: f32(M, E),
    all,
  };
}
