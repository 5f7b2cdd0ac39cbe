// Activation buffers of the Llama-shaped block for one batch shape, and the plan of what a layer
// keeps for its backward (decided once here; the block reads it). Shape letters: M = B·T rows,
// C hidden, Cq = heads·D, Ckv = kvHeads·D, F intermediate, r the LoRA rank.
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { StepWorkspace } from '../model/decoder-lm.js';
import type { LoraAdapter, LoraLayer } from '../model/lora.js';
import type { LlamaConfig } from './llama-config.js';

/**
 * What a layer's backward needs besides what every layer keeps (its input xIn, s1, rstd1/2, q, k,
 * v and lse, gate|up, and the LoRA caches xa). A frozen linear's backward needs no input
 * (dX = dY·W), so a linear's input matters only when it has a LoRA branch (whose dA reads it):
 *  - the norms' outputs a (q/k/v) and f (gate|up) are recomputed then from the kept xIn / s1
 *    (an RMSNorm is one cheap pass; the same op on the same input gives the same bits), into
 *    one shared buffer each, instead of being kept per layer;
 *  - SwiGLU's output h (down_proj) is recomputed from the kept gate|up the same way;
 *  - the attention output o (o_proj) is kept (f32): the attention backward also reads it for
 *    D = rowsum(dO∘O), which otherwise costs one more pass over the keys.
 */
export interface LlamaLayerPlan {
  needAttnIn: boolean;
  keepO: boolean;
  needMlpIn: boolean;
  needH: boolean;
}

export function planLlamaLayer(l: LoraLayer | undefined): LlamaLayerPlan {
  return {
    needAttnIn: l?.q_proj !== undefined || l?.k_proj !== undefined || l?.v_proj !== undefined,
    keepO: l?.o_proj !== undefined,
    needMlpIn: l?.gate_up !== undefined,
    needH: l?.down_proj !== undefined,
  };
}

/**
 * Activation dtypes (decoding keeps f32: see createWorkspace in llama.ts). Under autocast (a bf16
 * or quantised base, training and scoring) the linears consume their inputs rounded to bf16
 * (bind-kernels' autocast), so what a layer keeps is stored as the bf16 values its consumers read,
 * each rounded once where it is made:
 *  - gate|up (bf16): the gate_up linear's output; SwiGLU's forward and backward (and the backward's
 *    recomputed h) all read these bf16 values (the swiglu ops take bf16 gate/up, widened exactly),
 *    as torch's autocast SwiGLU reads the bf16 gate_proj/up_proj outputs;
 *  - q, k, v (bf16): what the attention forward and backward read (the op widens bf16 exactly);
 *    v is the v_proj linear's output, q and k are rounded after the rotation (as transformers'
 *    autocast feeds bf16 q/k/v to the attention).
 * f32 (and f16) bases keep everything f32: their numerics do not change (the recomputed a, f, h
 * are the same ops on the same inputs, bit for bit).
 * Per layer at SmolLM2-360M's shape (C = 960, Cq = 960, Ckv = 320, F = 2560, r = 16 on all seven
 * linears), M = 2048 tokens, measured as native bytes per added layer: 122.7 MB before this plan
 * (everything f32; a, f and h kept per layer); 84.9 MB in f32 (xIn, s1, o 7.9 each; q, k, v 13.1;
 * gate|up 41.9; xa 0.9) and 55.6 MB under bf16 autocast (q, k, v 6.6; gate|up 21); Qwen2.5-0.5B
 * shape (C = 896, F = 4864, 2 KV heads) 175.1 -> 71.3 MB. gate|up is
 * still the largest: keeping only f (7.9 MB) would cost recomputing the gate_up product (a third
 * of the layer's matmul FLOPs) in the backward - activation checkpointing's trade, not this one.
 */
export interface LlamaActivationDtypes {
  qkv: 'f32' | 'bf16';
  gateUp: 'f32' | 'bf16';
}

export interface LlamaLayerCache {
  plan: LlamaLayerPlan;
  xIn: NativeTensor; // [M, C] layer input (the attention residual)
  a: NativeTensor; // [M, C] f32 input_layernorm output (the shared one: recomputed for the backward)
  rstd1: NativeTensor; // [M]
  qPre: NativeTensor; // [M, Cq] f32 q_proj output (qwen3: kept, before q_norm; bf16 q: shared scratch; else q itself)
  kPre: NativeTensor; // [M, Ckv]
  qRot: NativeTensor; // [M, Cq] f32 where the rotation runs (q itself when q is f32)
  kRot: NativeTensor; // [M, Ckv]
  q: NativeTensor; // [M, Cq] after QK-norm and the rotation (what the attention read; f32 or bf16)
  k: NativeTensor; // [M, Ckv]
  v: NativeTensor; // [M, Ckv]
  qRstd?: NativeTensor; // [M·heads] qwen3's q_norm cache
  kRstd?: NativeTensor; // [M·kvHeads]
  o: NativeTensor; // [M, Cq] f32 attention output
  lse: NativeTensor; // [B·heads·T]
  s1: NativeTensor; // [M, C] xIn + o_proj(o)
  f: NativeTensor; // [M, C] f32 post_attention_layernorm output (shared; recomputed for the backward)
  rstd2: NativeTensor; // [M]
  gateUp: NativeTensor; // [M, 2F] gate | up, one product (f32 or bf16)
  gate: NativeTensor; // [M, F] column views of gateUp
  up: NativeTensor;
  h: NativeTensor; // [M, F] f32 silu(gate)·up (shared; recomputed for the backward)
  xa: Partial<Record<string, NativeTensor>>; // [M, r] per LoRA module
}

export interface LlamaWorkspace extends StepWorkspace {
  caches: LlamaLayerCache[];
  dtypes: LlamaActivationDtypes;
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

export function createLlamaWorkspace(
  c: LlamaConfig, lora: LoraAdapter | undefined, B: number, T: number, device: DeviceName, checkpointing: boolean, dtypes: LlamaActivationDtypes,
): LlamaWorkspace {
  const { Tensor } = native();
  const all: NativeTensor[] = [];
  const make = (dtype: 'f32' | 'bf16' | 'i32' | 'i64', shape: number[]) => {
    const t = Tensor.empty(dtype, shape, device);
    all.push(t);
    return t;
  };
  const f32 = (...shape: number[]) => make('f32', shape);
  const track = (t: NativeTensor) => (all.push(t), t);
  // Columns [at, at + n) of a [M, W] buffer, as a strided [M, n] view.
  const cols = (t: NativeTensor, at: number, n: number) => track(t.narrow(1, at, n));
  const M = B * T;
  const C = c.hiddenSize;
  const F = c.intermediateSize;
  const H = c.numAttentionHeads;
  const Cq = H * c.headDim;
  const Ckv = c.numKeyValueHeads * c.headDim;
  const r = lora?.r ?? 0;
  const bf16Qkv = dtypes.qkv === 'bf16';
  // The backward's dGate|dUp [M, 2F] also holds, in turn, buffers that are never live with it:
  // SwiGLU's output h (down's backward has read it before the SwiGLU backward writes dGate|dUp; the
  // forward has no dGateUp), then the attention part's dO, dQ, dK, dV (after gate|up's backward has
  // read dGate|dUp; the next layer's h comes after its q/k/v backward). 21 MB at SmolLM2's shape.
  const dGateUp = f32(M, 2 * F);
  const flat = track(dGateUp.reshape([M * 2 * F]));
  let at = 0;
  const inGateUp = (rows: number, width: number, from?: number) => {
    if (from !== undefined) at = from;
    if (at + rows * width > M * 2 * F) return f32(rows, width);
    using part = flat.narrow(0, at, rows * width);
    at += rows * width;
    return track(part.reshape([rows, width]));
  };
  const h = inGateUp(M, F, 0);
  const attnGrads = { dO: inGateUp(M, Cq, 0), dQ: inGateUp(M, Cq), dK: inGateUp(M, Ckv), dV: inGateUp(M, Ckv) };
  const shared = {
    a: f32(M, C), f: f32(M, C), o: f32(M, Cq),
    qRot: bf16Qkv ? f32(M, Cq) : undefined, kRot: bf16Qkv ? f32(M, Ckv) : undefined,
  };
  const cacheFor = (i: number, xIn: NativeTensor): LlamaLayerCache => {
    const l = lora?.layers[i];
    const plan = planLlamaLayer(l);
    const q = make(dtypes.qkv, [M, Cq]);
    const k = make(dtypes.qkv, [M, Ckv]);
    const qRot = shared.qRot ?? q;
    const kRot = shared.kRot ?? k;
    const xa: LlamaLayerCache['xa'] = {};
    for (const [name, m] of Object.entries(l ?? {})) xa[name] = f32(M, m!.groups * r);
    const gateUp = make(dtypes.gateUp, [M, 2 * F]);
    return {
      plan, xIn,
      a: shared.a, rstd1: f32(M),
      // qwen3's QK-norm backward reads its input, so it is kept; otherwise q_proj's output is
      // rotated where it lands (q itself, or the shared f32 buffer rounded into a bf16 q).
      qPre: c.qkNorm ? f32(M, Cq) : qRot, kPre: c.qkNorm ? f32(M, Ckv) : kRot, qRot, kRot, q, k, v: make(dtypes.qkv, [M, Ckv]),
      qRstd: c.qkNorm ? f32(M * H) : undefined, kRstd: c.qkNorm ? f32(M * c.numKeyValueHeads) : undefined,
      o: plan.keepO ? f32(M, Cq) : shared.o, lse: f32(B * H * T),
      s1: f32(M, C), f: shared.f, rstd2: f32(M),
      gateUp, gate: cols(gateUp, 0, F), up: cols(gateUp, F, F), h, xa,
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
  return {
    B, T, M, dtypes,
    ids: make('i32', [M]), posIds: make('i32', [M]), mask: make('i32', [M]), targets: make('i32', [M]),
    inputs, caches, out: f32(M, C), hFinal: f32(M, C), finalMean: f32(M), finalRstd: f32(M), recompute: checkpointing ? f32(M, C) : undefined,
    dOut: f32(M, C), dOutB: f32(M, C), dFinal: f32(M, C), dTmp: f32(M, C), dTmp2: f32(M, C),
    ...attnGrads,
    dQPre: c.qkNorm ? f32(M, Cq) : undefined, dKPre: c.qkNorm ? f32(M, Ckv) : undefined,
    dH: f32(M, F), dGateUp, dGate: cols(dGateUp, 0, F), dUp: cols(dGateUp, F, F),
    all,
  };
}
