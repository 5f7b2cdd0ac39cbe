// OPT (transformers' OPTForCausalLM) as a family of the decoder base: its config (config/opt-config.ts),
// parameter table (opt-params.ts), block (opt-block.ts) and workspace (opt-workspace.ts), tied here.
// Both layouts: pre-LN with a final layer norm (opt-125m, 1.3b, ...) and opt-350m's post-LN with
// project_in/project_out. Learned positions with offset 2; lm_head tied to embed_tokens.
import { native, type NativeTensor } from '@lora/core-native';

import { writeOptModel } from '../config/opt-checkpoint.js';
import { loadOptConfig, optConfigToJson, type OptConfig } from '../config/opt-config.js';
import { assertOptWeights } from '../config/opt-weights.js';
import type { RawTensor, WeightSource } from '../io/tensor.js';
import { autocast } from '../model/bind-kernels.js';
import { DecoderLM, loadFromWeights, loadPretrained, type FamilyLoader } from '../model/decoder-lm.js';
import type { LayerDropout } from '../model/dropout.js';
import type { Kernels, KvCache } from '../model/kernels.js';
import { logicalShapes, type QuantizationConfig } from '../model/quantized-io.js';
import { loadWeights, type LoadWeightOptions } from '../model/weights.js';
import type { RaggedBlock } from './batch-step.js';
import type { LoadOptions } from './causal-lm.js';
import { layerBackward, layerForward, LN_EPS, type LayerWeights, type ModelWeights } from './opt-block.js';
import { optRaggedBlock } from './opt-batch.js';
import { OPT_PARAMS } from './opt-params.js';
import { createWorkspace, type Workspace } from './opt-workspace.js';
import { expandParams } from './params.js';

export type { LayerWeights, ModelWeights } from './opt-block.js';

export class OptForCausalLM extends DecoderLM<OptConfig, ModelWeights, Workspace> {
  readonly modelType = 'opt';
  private ln2Nonzero: boolean | undefined;

  private constructor(config: OptConfig, weights: ModelWeights, kernels: Kernels, device: OptForCausalLM['device']) {
    super(config, weights, kernels, device, OPT_PARAMS);
  }

  private static readonly family: FamilyLoader<OptConfig, ModelWeights, OptForCausalLM> = {
    loadConfig: loadOptConfig,
    loadWeights: loadOptWeights,
    create: (config, weights, kernels, device) => new OptForCausalLM(config, weights, kernels, device),
  };

  /** A Hugging Face model folder, or a hub id resolved into the HF cache. */
  static fromPretrained(idOrDir: string, o: LoadOptions = {}): Promise<OptForCausalLM> {
    return loadPretrained(OptForCausalLM.family, idOrDir, o);
  }

  static fromWeights(config: OptConfig, source: WeightSource, o: LoadOptions = {}, quant?: QuantizationConfig): Promise<OptForCausalLM> {
    return loadFromWeights(OptForCausalLM.family, config, source, o, quant);
  }

  /** Parameters of the base model (lm_head tied, so counted once), as PEFT's "all params". */
  baseParameters(): number {
    const c = this.config;
    const C = c.hiddenSize;
    const F = c.ffnDim;
    const E = c.wordEmbedProjDim;
    let n = c.vocabSize * E + (c.maxPositionEmbeddings + 2) * C;
    if (E !== C) n += 2 * C * E;
    if (c.doLayerNormBefore && !c.removeFinalLayerNorm) n += 2 * C;
    const bias = c.enableBias ? 1 : 0;
    n += c.numHiddenLayers * (4 * (C * C + bias * C) + (F * C + bias * F) + (C * F + bias * C) + 4 * C);
    return n;
  }

  configJson(): Record<string, unknown> {
    return optConfigToJson(this.config);
  }

  async writeModel(dir: string, tensors: Map<string, RawTensor>): Promise<void> {
    await writeOptModel(dir, this.config, tensors);
  }

  protected residualDropout(): number {
    return this.config.dropout;
  }

  /** HF OPT: positions = cumsum(mask) * mask - 1, then + 2 (the learned-position offset). */
  protected positionId(count: number, _real: boolean, past: number): number {
    return count - 1 + 2 + past;
  }

  protected createWorkspace(B: number, T: number, o: { checkpointing: boolean; decoding: boolean }): Workspace {
    // Decoding keeps q/k/v in f32 (the cached attention reads f32) and runs no backward.
    const bf16Qkv = !o.decoding && autocast(this.weights.layers[0].qkvW);
    return createWorkspace(this.config, this.lora, B, T, this.device.memory, o.checkpointing, bf16Qkv, !o.decoding && this.ln2Invertible());
  }

  /** Tokens (project_in when E != C) + learned positions. */
  protected embed(ws: Workspace): void {
    const k = this.kernels;
    const w = this.weights;
    const x0 = ws.inputs[0];
    if (w.projIn) {
      k.embedding(ws.ids, w.embed, ws.embedOut);
      k.linear(ws.embedOut, w.projIn, undefined, x0);
      k.embedding(ws.posIds, w.pos, ws.posOut);
      k.add(x0, ws.posOut, x0);
    } else {
      k.embedding(ws.ids, w.embed, x0, { ids: ws.posIds, table: w.pos });
    }
  }

  protected layerForward(i: number, ws: Workspace, out: NativeTensor, drop: LayerDropout | undefined, kv?: KvCache): void {
    layerForward(this.kernels, this.config, this.weights.layers[i], this.lora, i, ws.caches[i], ws, out, drop, kv);
  }

  protected layerBackward(i: number, ws: Workspace, out: NativeTensor, dOut: NativeTensor, dx: NativeTensor | undefined, drop: LayerDropout | undefined): void {
    layerBackward(this.kernels, this.config, this.weights.layers[i], this.lora, i, ws.caches[i], ws, out, dOut, dx, drop);
  }

  /** Pre-LN's final layer norm, post-LN's project_out, or x. */
  protected final(x: NativeTensor, h: NativeTensor, mean: NativeTensor, rstd: NativeTensor): NativeTensor {
    const w = this.weights;
    if (this.hasFinalNorm()) {
      this.kernels.layerNorm(x, w.finalLnG, w.finalLnB, LN_EPS, h, mean, rstd);
      return h;
    }
    if (w.projOut) {
      this.kernels.linear(x, w.projOut, undefined, h);
      return h;
    }
    return x;
  }

  protected finalBackward(ws: Workspace, dOut: NativeTensor): void {
    const k = this.kernels;
    const w = this.weights;
    if (this.hasFinalNorm()) k.layerNormBackward(ws.dFinal, ws.out, w.finalLnG, ws.finalMean, ws.finalRstd, dOut);
    else if (w.projOut) k.linearBackward(ws.dFinal, ws.out, w.projOut, dOut, false);
    else k.scale(ws.dFinal, 1, dOut);
  }

  protected kvWidth(): number {
    return this.config.hiddenSize;
  }

  protected headWidth(): number {
    return this.config.wordEmbedProjDim;
  }

  protected raggedBlock(): RaggedBlock {
    return optRaggedBlock(this.config, this.weights);
  }

  private hasFinalNorm(): boolean {
    return this.weights.finalLnG !== undefined || (this.config.doLayerNormBefore && !this.config.removeFinalLayerNorm);
  }

  /** Whether every layer's final_layer_norm gamma is nonzero (its backward can run from the output). */
  private ln2Invertible(): boolean {
    this.ln2Nonzero ??= this.weights.layers.every((l) => l.ln2G !== undefined && (l.ln2G.toArray() as Float32Array).every((g) => g !== 0));
    return this.ln2Nonzero;
  }
}

/** Loads and validates every base tensor of an OPT model; the source is read one tensor at a time. */
export async function loadOptWeights(config: OptConfig, source: WeightSource, k: Kernels, o: Omit<LoadWeightOptions, 'tiedEmbedding'>): Promise<ModelWeights> {
  const params = expandParams(OPT_PARAMS, config);
  const report = assertOptWeights(config, o.quant ? logicalShapes(source, params) : source);
  const loaded = await loadWeights(params, report, source, k, { ...o, tiedEmbedding: 'embed' });
  // Without biases (enable_bias false) the linears add zeros: one f32 vector per missing bias.
  const { Tensor } = native();
  const zeros = (n: number) => Tensor.fromArray(new Float32Array(n), [n], 'f32', o.device);
  const C = config.hiddenSize;
  const layers = loaded.layers.map((l) => ({
    ...l,
    qkvB: l.qkvB ?? zeros(3 * C), outB: l.outB ?? zeros(C), fc1B: l.fc1B ?? zeros(config.ffnDim), fc2B: l.fc2B ?? zeros(C),
  })) as unknown as LayerWeights[];
  return { ...(loaded.globals as unknown as Omit<ModelWeights, 'layers' | 'dtype'>), layers, dtype: o.dtype };
}
