// Activation buffers of the Llama-shaped block for one batch shape, and the plan of what a layer
// keeps for its backward (decided once here; the block reads it). Shape letters: M = B·T rows,
// C hidden, Cq = heads·D, Ckv = kvHeads·D, F intermediate, r the LoRA rank.
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { StepWorkspace } from '../model/decoder-lm.js';
import type { LoraAdapter, LoraLayer } from '../model/lora.js';
import type { LlamaConfig } from './llama-config.js';

/**
 * A frozen linear's backward needs no input (dX = dY·W), so a norm's output is kept per layer only
 * when a linear it feeds has a LoRA branch (whose dA reads it); likewise the attention output
 * (o_proj) and SwiGLU's output (down_proj). gate and up are always kept (SwiGLU's backward reads
 * them), and so are q, k (after the rotation), v and the attention's lse.
 */
export interface LlamaLayerPlan {
  keepAttnIn: boolean;
  keepO: boolean;
  keepMlpIn: boolean;
  keepH: boolean;
}

export function planLlamaLayer(l: LoraLayer | undefined): LlamaLayerPlan {
  return {
    keepAttnIn: l?.q_proj !== undefined || l?.k_proj !== undefined || l?.v_proj !== undefined,
    keepO: l?.o_proj !== undefined,
    keepMlpIn: l?.gate_up !== undefined,
    keepH: l?.down_proj !== undefined,
  };
}

export interface LlamaLayerCache {
  plan: LlamaLayerPlan;
  xIn: NativeTensor; // [M, C] layer input (the attention residual)
  a: NativeTensor; // [M, C] input_layernorm output
  rstd1: NativeTensor; // [M]
  qPre: NativeTensor; // [M, Cq] q_proj output (qwen3: before q_norm; else q itself)
  kPre: NativeTensor; // [M, Ckv]
  q: NativeTensor; // [M, Cq] after QK-norm and the rotation (what the attention read)
  k: NativeTensor; // [M, Ckv]
  v: NativeTensor; // [M, Ckv]
  qRstd?: NativeTensor; // [M·heads] qwen3's q_norm cache
  kRstd?: NativeTensor; // [M·kvHeads]
  o: NativeTensor; // [M, Cq] attention output
  lse: NativeTensor; // [B·heads·T]
  s1: NativeTensor; // [M, C] xIn + o_proj(o)
  f: NativeTensor; // [M, C] post_attention_layernorm output
  rstd2: NativeTensor; // [M]
  gateUp: NativeTensor; // [M, 2F] gate | up, one product
  gate: NativeTensor; // [M, F] column views of gateUp
  up: NativeTensor;
  h: NativeTensor; // [M, F] silu(gate)·up
  xa: Partial<Record<string, NativeTensor>>; // [M, r] per LoRA module
}

export interface LlamaWorkspace extends StepWorkspace {
  caches: LlamaLayerCache[];
  dTmp: NativeTensor; // [M, C]
  dTmp2: NativeTensor; // [M, C]
  dO: NativeTensor; // [M, Cq]
  dQ: NativeTensor; // [M, Cq]
  dK: NativeTensor; // [M, Ckv]
  dV: NativeTensor; // [M, Ckv]
  dQPre?: NativeTensor; // [M, Cq] qwen3
  dKPre?: NativeTensor; // [M, Ckv]
  dH: NativeTensor; // [M, F]
  dGateUp: NativeTensor; // [M, 2F]
  dGate: NativeTensor; // [M, F] column views of dGateUp
  dUp: NativeTensor;
}

export function createLlamaWorkspace(c: LlamaConfig, lora: LoraAdapter | undefined, B: number, T: number, device: DeviceName, checkpointing: boolean): LlamaWorkspace {
  const { Tensor } = native();
  const all: NativeTensor[] = [];
  const make = (dtype: 'f32' | 'i32' | 'i64', shape: number[]) => {
    const t = Tensor.empty(dtype, shape, device);
    all.push(t);
    return t;
  };
  const f32 = (...shape: number[]) => make('f32', shape);
  // Columns [at, at + n) of a [M, W] buffer, as a strided [M, n] view.
  const cols = (t: NativeTensor, at: number, n: number) => {
    const v = t.narrow(1, at, n);
    all.push(v);
    return v;
  };
  const M = B * T;
  const C = c.hiddenSize;
  const F = c.intermediateSize;
  const H = c.numAttentionHeads;
  const Cq = H * c.headDim;
  const Ckv = c.numKeyValueHeads * c.headDim;
  const r = lora?.r ?? 0;
  const shared = { a: f32(M, C), o: f32(M, Cq), f: f32(M, C), h: f32(M, F) };
  const cacheFor = (i: number, xIn: NativeTensor): LlamaLayerCache => {
    const l = lora?.layers[i];
    const plan = planLlamaLayer(l);
    const q = f32(M, Cq);
    const k = f32(M, Ckv);
    const xa: LlamaLayerCache['xa'] = {};
    for (const [name, m] of Object.entries(l ?? {})) xa[name] = f32(M, m!.groups * r);
    const gateUp = f32(M, 2 * F);
    return {
      plan, xIn,
      a: plan.keepAttnIn ? f32(M, C) : shared.a, rstd1: f32(M),
      qPre: c.qkNorm ? f32(M, Cq) : q, kPre: c.qkNorm ? f32(M, Ckv) : k, q, k, v: f32(M, Ckv),
      qRstd: c.qkNorm ? f32(M * H) : undefined, kRstd: c.qkNorm ? f32(M * c.numKeyValueHeads) : undefined,
      o: plan.keepO ? f32(M, Cq) : shared.o, lse: f32(B * H * T),
      s1: f32(M, C), f: plan.keepMlpIn ? f32(M, C) : shared.f, rstd2: f32(M),
      gateUp, gate: cols(gateUp, 0, F), up: cols(gateUp, F, F), h: plan.keepH ? f32(M, F) : shared.h, xa,
    };
  };
  const inputs = Array.from({ length: c.numHiddenLayers }, () => f32(M, C));
  let caches: LlamaLayerCache[];
  if (checkpointing) {
    // LoRA modules are the same in every layer, so one scratch cache fits all.
    const one = cacheFor(0, inputs[0]);
    caches = inputs.map((xIn) => ({ ...one, xIn }));
  } else {
    caches = inputs.map((xIn, i) => cacheFor(i, xIn));
  }
  const dGateUp = f32(M, 2 * F);
  return {
    B, T, M,
    ids: make('i32', [M]), posIds: make('i32', [M]), mask: make('i32', [M]), targets: make('i32', [M]),
    inputs, caches, out: f32(M, C), hFinal: f32(M, C), finalMean: f32(M), finalRstd: f32(M), recompute: checkpointing ? f32(M, C) : undefined,
    dOut: f32(M, C), dOutB: f32(M, C), dFinal: f32(M, C), dTmp: f32(M, C), dTmp2: f32(M, C),
    dO: f32(M, Cq), dQ: f32(M, Cq), dK: f32(M, Ckv), dV: f32(M, Ckv),
    dQPre: c.qkNorm ? f32(M, Cq) : undefined, dKPre: c.qkNorm ? f32(M, Ckv) : undefined,
    dH: f32(M, F), dGateUp, dGate: cols(dGateUp, 0, F), dUp: cols(dGateUp, F, F),
    all,
  };
}
