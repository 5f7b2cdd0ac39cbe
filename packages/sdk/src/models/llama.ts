// The Llama-shaped families (transformers' LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM) on
// the decoder base: one block with flags (q/k/v biases for qwen2, QK-norm and an explicit head_dim
// for qwen3, grouped KV heads, tied or untied lm_head), forward and backward side by side:
//
//   a   = RMSNorm(x)                          (input_layernorm)
//   q, k, v = a·Wqᵀ (+b), a·Wkᵀ (+b), a·Wvᵀ (+b)
//   q, k = RMSNorm_D(q), RMSNorm_D(k)         (qwen3, per head)
//   q, k = rope(q), rope(k)                   (rotate-half, positions from the attention mask)
//   s1  = x + o_proj(attention(q, k, v))      (causal, GQA)
//   f   = RMSNorm(s1)                         (post_attention_layernorm)
//   out = s1 + down(silu(gate(f)) · up(f))     (gate | up stacked: one product)
//
// No residual dropout (the families have none); LoRA dropout on the LoRA branches' inputs.
import { native, type NativeTensor } from '@lora/core-native';

import { assertReport, checkWeights } from '../config/weights-check.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { LoraError } from '../io/errors.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import type { RawTensor, WeightSource } from '../io/tensor.js';
import { autocast } from '../model/bind-kernels.js';
import type { BaseDType } from '../model/device.js';
import { DecoderLM, loadFromWeights, loadPretrained, type FamilyLoader } from '../model/decoder-lm.js';
import { site, type LayerDropout } from '../model/dropout.js';
import { linear, linearGrad, type Kernels, type KvCache } from '../model/kernels.js';
import type { LoraAdapter } from '../model/lora.js';
import { logicalShapes, type QuantizationConfig } from '../model/quantized-io.js';
import { loadWeights, type LoadWeightOptions } from '../model/weights.js';
import type { RaggedBlock } from './batch-step.js';
import type { LoadOptions } from './causal-lm.js';
import { llamaConfigToJson, loadLlamaConfig, ropeInvFreq, type LlamaConfig } from './llama-config.js';
import { llamaRaggedBlock } from './llama-batch.js';
import { LLAMA_PARAMS, TOP_LEVEL } from './llama-params.js';
import { createLlamaWorkspace, type LlamaLayerCache, type LlamaWorkspace } from './llama-workspace.js';
import { expandParams, paramShapes } from './params.js';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

/** One layer's frozen weights by the roles of the parameter table (biases and QK-norm per flags). */
export interface LlamaLayerWeights {
  ln1W: NativeTensor;
  qW: NativeTensor;
  qB?: NativeTensor;
  kW: NativeTensor;
  kB?: NativeTensor;
  vW: NativeTensor;
  vB?: NativeTensor;
  oW: NativeTensor;
  oB?: NativeTensor;
  qNormW?: NativeTensor;
  kNormW?: NativeTensor;
  ln2W: NativeTensor;
  gateUpW: NativeTensor; // [2F, C] rows gate | up
  gateUpB?: NativeTensor;
  downW: NativeTensor;
  downB?: NativeTensor;
}

export interface LlamaWeights {
  embed: NativeTensor; // [V, C] the input gather (the tied head itself when f32/bf16)
  lmHead: NativeTensor; // [V, C] base dtype
  finalNormW: NativeTensor;
  invFreq: NativeTensor; // [D/2] f32 rotary frequencies (rope_scaling applied)
  layers: LlamaLayerWeights[];
  dtype: BaseDType;
}

// LoRA dropout sites of a layer (each its own stretch of the RNG's counters).
const SITE: Record<string, number> = { q_proj: 0, k_proj: 1, v_proj: 2, o_proj: 3, gate_up: 4, down_proj: 5 };

export class LlamaForCausalLM extends DecoderLM<LlamaConfig, LlamaWeights, LlamaWorkspace> {
  get modelType(): string {
    return this.config.modelType;
  }

  private constructor(config: LlamaConfig, weights: LlamaWeights, kernels: Kernels, device: LlamaForCausalLM['device']) {
    super(config, weights, kernels, device, LLAMA_PARAMS);
  }

  private static readonly family: FamilyLoader<LlamaConfig, LlamaWeights, LlamaForCausalLM> = {
    loadConfig: loadLlamaConfig,
    loadWeights: loadLlamaWeights,
    create: (config, weights, kernels, device) => new LlamaForCausalLM(config, weights, kernels, device),
  };

  /** A Hugging Face model folder (model_type llama, qwen2 or qwen3), or a hub id resolved into the HF cache. */
  static fromPretrained(idOrDir: string, o: LoadOptions = {}): Promise<LlamaForCausalLM> {
    return loadPretrained(LlamaForCausalLM.family, idOrDir, o);
  }

  static fromWeights(config: LlamaConfig, source: WeightSource, o: LoadOptions = {}, quant?: QuantizationConfig): Promise<LlamaForCausalLM> {
    return loadFromWeights(LlamaForCausalLM.family, config, source, o, quant);
  }

  /** Parameters of the base (a tied head counted once), as PEFT's "all params". */
  baseParameters(): number {
    return this.params.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  }

  configJson(): Record<string, unknown> {
    return llamaConfigToJson(this.config);
  }

  /** config.json + model.safetensors as save_pretrained writes them (`model.` prefix, a top-level lm_head when untied). */
  async writeModel(dir: string, tensors: Map<string, RawTensor>): Promise<void> {
    const expected = paramShapes(this.params);
    const out = new Map<string, RawTensor>();
    for (const [name, t] of tensors) {
      if (!expected.has(name)) throw new LoraError('E_WEIGHTS_MISMATCH', `writeModel: "${name}" is not a ${this.modelType} tensor of this configuration`);
      out.set(TOP_LEVEL.has(name) ? name : `model.${name}`, t);
    }
    const c = this.config;
    assertReport(checkWeights(expected, { keys: () => [...out.keys()], info: (k) => ({ shape: out.get(k)!.shape }) }, { lmHead: [c.vocabSize, c.hiddenSize], numLayers: c.numHiddenLayers }), 'writeModel');
    await mkdir(dir, { recursive: true });
    await writeSafetensors(join(dir, 'model.safetensors'), out, { format: 'pt' });
    await writeFileAtomic(join(dir, 'config.json'), [new TextEncoder().encode(`${JSON.stringify(this.configJson(), null, 2)}\n`)]);
  }

  protected residualDropout(): number {
    return 0;
  }

  /** As transformers' generate forms position_ids: cumsum(mask) - 1, and 1 at padding. */
  protected positionId(count: number, real: boolean, past: number): number {
    return real ? count - 1 + past : 1;
  }

  protected createWorkspace(B: number, T: number, o: { checkpointing: boolean; decoding: boolean }): LlamaWorkspace {
    // Autocast (a bf16 or quantised base) keeps gate|up and q/k/v in bf16 for training and scoring.
    // Decoding keeps f32 (its KV cache is f32, its buffers are one step's, and its tokens stay those
    // of the ragged serve step, which tests compare token for token).
    const bf16 = autocast(this.weights.layers[0].gateUpW) && !o.decoding;
    const qkv = autocast(this.weights.layers[0].qW) && !o.decoding;
    return createLlamaWorkspace(this.config, this.lora, B, T, this.device.memory, o.checkpointing, { qkv: qkv ? 'bf16' : 'f32', gateUp: bf16 ? 'bf16' : 'f32' });
  }

  protected embed(ws: LlamaWorkspace): void {
    this.kernels.embedding(ws.ids, this.weights.embed, ws.inputs[0]);
  }

  protected layerForward(i: number, ws: LlamaWorkspace, out: NativeTensor, drop: LayerDropout | undefined, kv?: KvCache): void {
    const k = this.kernels;
    const c = this.config;
    const w = this.weights.layers[i];
    const x = ws.caches[i];
    const lin = loraLinear(this.lora, i, x, drop);
    const eps = c.rmsNormEps;
    const H = c.numAttentionHeads;
    k.rmsNorm(x.xIn, w.ln1W, eps, x.a, x.rstd1);
    linear(k, x.a, w.qW, w.qB, x.qPre, lin('q_proj'));
    linear(k, x.a, w.kW, w.kB, x.kPre, lin('k_proj'));
    linear(k, x.a, w.vW, w.vB, x.v, lin('v_proj'));
    if (c.qkNorm) {
      k.rmsNorm(x.qPre, w.qNormW, eps, x.qRot, x.qRstd!, c.headDim);
      k.rmsNorm(x.kPre, w.kNormW, eps, x.kRot, x.kRstd!, c.headDim);
    }
    k.rope(x.qRot, x.qRot, ws.posIds, this.weights.invFreq, H, false);
    k.rope(x.kRot, x.kRot, ws.posIds, this.weights.invFreq, c.numKeyValueHeads, false);
    // bf16 q/k (autocast): rounded once after the rotation, the values the attention reads both ways.
    if (x.qRot !== x.q) k.cast(x.qRot, x.q);
    if (x.kRot !== x.k) k.cast(x.kRot, x.k);
    k.attend(x.q, x.k, x.v, ws.mask, this.shape(ws), 1 / Math.sqrt(c.headDim), x.o, x.lse, kv);
    linear(k, x.o, w.oW, w.oB, x.s1, { ...lin('o_proj'), residual: x.xIn });
    k.rmsNorm(x.s1, w.ln2W, eps, x.f, x.rstd2);
    linear(k, x.f, w.gateUpW, w.gateUpB, x.gateUp, lin('gate_up'));
    k.swiGlu(x.gate, x.up, x.h);
    linear(k, x.h, w.downW, w.downB, out, { ...lin('down_proj'), residual: x.s1 });
  }

  /** dOut is consumed (it becomes the grad at s1); dx undefined for the first layer (LoRA grads only). */
  protected layerBackward(i: number, ws: LlamaWorkspace, _out: NativeTensor, dOut: NativeTensor, dx: NativeTensor | undefined, drop: LayerDropout | undefined): void {
    const k = this.kernels;
    const c = this.config;
    const w = this.weights.layers[i];
    const x = ws.caches[i];
    const grad = loraGrad(this.lora, i, x, drop);
    const eps = c.rmsNormEps;
    // MLP: dOut -> down -> SwiGLU -> gate | up -> dF -> post_attention_layernorm; s1's grad = dOut + that.
    // The inputs a LoRA branch's dA reads (h, f, a) are not kept: recomputed here by the forward's
    // own ops on the kept tensors, bit for bit what the forward fed the branch (see the plan).
    if (x.plan.needH) k.swiGlu(x.gate, x.up, x.h);
    linearGrad(k, dOut, x.h, w.downW, ws.dH, grad('down_proj'));
    k.swiGluBackward(x.gate, x.up, ws.dH, ws.dGate, ws.dUp);
    if (x.plan.needMlpIn) k.rmsNorm(x.s1, w.ln2W, eps, x.f, x.rstd2);
    linearGrad(k, ws.dGateUp, x.f, w.gateUpW, ws.dTmp, grad('gate_up'));
    k.rmsNormBackward(ws.dTmp, x.s1, w.ln2W, x.rstd2, ws.dTmp2);
    const dS1 = dOut;
    k.add(dOut, ws.dTmp2, dS1);
    // Attention: o_proj -> attention -> inverse rotation -> QK-norm -> q/k/v -> input_layernorm.
    linearGrad(k, dS1, x.o, w.oW, ws.dO, grad('o_proj'));
    k.attendBackward(ws.dO, x.q, x.k, x.v, x.plan.keepO ? x.o : null, x.lse, ws.mask, this.shape(ws), 1 / Math.sqrt(c.headDim), ws.dQ, ws.dK, ws.dV);
    k.rope(ws.dQ, ws.dQ, ws.posIds, this.weights.invFreq, c.numAttentionHeads, true);
    k.rope(ws.dK, ws.dK, ws.posIds, this.weights.invFreq, c.numKeyValueHeads, true);
    let dQ = ws.dQ;
    let dK = ws.dK;
    if (c.qkNorm) {
      k.rmsNormBackward(ws.dQ, x.qPre, w.qNormW, x.qRstd!, ws.dQPre!, c.headDim);
      k.rmsNormBackward(ws.dK, x.kPre, w.kNormW, x.kRstd!, ws.dKPre!, c.headDim);
      [dQ, dK] = [ws.dQPre!, ws.dKPre!];
    }
    if (x.plan.needAttnIn) k.rmsNorm(x.xIn, w.ln1W, eps, x.a, x.rstd1);
    const dA = dx ? ws.dTmp : undefined;
    linearGrad(k, dQ, x.a, w.qW, dA, grad('q_proj'));
    linearGrad(k, dK, x.a, w.kW, dA, { ...grad('k_proj'), accumulate: dA !== undefined });
    linearGrad(k, ws.dV, x.a, w.vW, dA, { ...grad('v_proj'), accumulate: dA !== undefined });
    if (!dx) return;
    k.rmsNormBackward(ws.dTmp, x.xIn, w.ln1W, x.rstd1, dx);
    k.add(dx, dS1, dx);
  }

  protected final(x: NativeTensor, h: NativeTensor, _mean: NativeTensor, rstd: NativeTensor): NativeTensor {
    this.kernels.rmsNorm(x, this.weights.finalNormW, this.config.rmsNormEps, h, rstd);
    return h;
  }

  protected finalBackward(ws: LlamaWorkspace, dOut: NativeTensor): void {
    this.kernels.rmsNormBackward(ws.dFinal, ws.out, this.weights.finalNormW, ws.finalRstd, dOut);
  }

  protected kvWidth(): number {
    return this.config.numKeyValueHeads * this.config.headDim;
  }

  protected headWidth(): number {
    return this.config.hiddenSize;
  }

  protected raggedBlock(): RaggedBlock {
    return llamaRaggedBlock(this.config, this.weights);
  }

  private shape(ws: LlamaWorkspace) {
    return { B: ws.B, T: ws.T, H: this.config.numAttentionHeads, D: this.config.headDim };
  }
}

/** The LoRA part of a linear's options for module `name` of layer li (none when not targeted). */
function loraLinear(lora: LoraAdapter | undefined, li: number, x: LlamaLayerCache, d: LayerDropout | undefined) {
  return (name: string) => {
    const m = lora?.layers[li][name];
    const xa = x.xa[name];
    if (!lora || !m || !xa) return {};
    return { lora: { spec: lora.spec(m, d ? { seed: d.seed, offset: site(d, SITE[name]) } : undefined), xa } };
  };
}

function loraGrad(lora: LoraAdapter | undefined, li: number, x: LlamaLayerCache, d: LayerDropout | undefined) {
  const fwd = loraLinear(lora, li, x, d);
  return (name: string) => {
    const a = fwd(name).lora;
    const m = lora?.layers[li][name];
    return a && m ? { lora: { ...a, da: m.da, db: m.db } } : {};
  };
}

/** Loads and validates every base tensor; the source is read one tensor at a time. */
export async function loadLlamaWeights(config: LlamaConfig, source: WeightSource, k: Kernels, o: Omit<LoadWeightOptions, 'tiedEmbedding' | 'head'>): Promise<LlamaWeights> {
  const params = expandParams(LLAMA_PARAMS, config);
  const where = 'checkpoint';
  const report = assertReport(
    checkWeights(paramShapes(params), o.quant ? logicalShapes(source, params) : source, { lmHead: [config.vocabSize, config.hiddenSize], numLayers: config.numHiddenLayers }),
    where,
  );
  const loaded = await loadWeights(params, report, source, k, { ...o, tiedEmbedding: config.tieWordEmbeddings ? 'embed' : undefined, head: 'lmHead' });
  const invFreq = native().Tensor.fromArray(ropeInvFreq(config), [config.headDim / 2], 'f32', o.device);
  return { ...(loaded.globals as unknown as Omit<LlamaWeights, 'layers' | 'dtype' | 'invFreq'>), invFreq, layers: loaded.layers as unknown as LlamaLayerWeights[], dtype: o.dtype };
}
