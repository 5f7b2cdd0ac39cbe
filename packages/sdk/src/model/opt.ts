// OPTForCausalLM on native kernels: loading, forward, loss + backward (LoRA grads only — the base
// is frozen, so no weight grads are ever computed for it), and the plumbing adapters need.
import { native, type NativeTensor } from '@lora/core-native';

import { writeOptModel } from '../config/opt-checkpoint.js';
import { loadOptConfig, optConfigToJson, type OptConfig } from '../config/opt-config.js';
import { resolveModelDir, type ResolveOptions } from '../hub/resolve.js';
import { MODEL_FILES } from '../hub/selection.js';
import type { HubProgressEvent } from '../hub/progress.js';
import { openWeights } from '../io/open-weights.js';
import type { RawTensor, WeightSource } from '../io/tensor.js';
import { OPT_PARAMS } from '../models/opt-params.js';
import { expandParams, loraLayout, slotOf, type LoraLayout, type Param } from '../models/params.js';
import { LoraError } from '../io/errors.js';
import { IGNORE_INDEX } from '../data/batches.js';
import { resolveDevice, type BaseDType, type DeviceOption, type ResolvedDevice } from './device.js';
import { autocast, bindKernels } from './bind-kernels.js';
import type { Kernels, KvCache } from './kernels.js';
import { layerBackward, layerForward, LN_EPS, type LayerDropout } from './layer.js';
import { LoraAdapter, type LoraOptions } from './lora.js';
import { loadAdapterWeights, readAdapterConfig, saveAdapter } from './adapter-io.js';
import { decode, type DecodeTarget } from './generate.js';
import type { CausalLM, GenerateOptions, GenerateResult, LoadOptions, ModelBatch, StepOptions, StepResult } from '../models/causal-lm.js';
import { readQuantizationConfig, saveQuantizedBase, type QuantizationConfig } from './quantized-io.js';
import { mergedTensors } from './merge.js';
import { loadModelWeights, weightTensors, type ModelWeights } from './weights.js';
import { createWorkspace, type Workspace } from './workspace.js';

export type { LoadOptions, LoadProgressEvent, ModelBatch, StepOptions, StepResult } from '../models/causal-lm.js';

export class OptForCausalLM implements CausalLM {
  readonly modelType = 'opt';
  lora: LoraAdapter | undefined;
  private ws: Workspace | undefined;
  private wsKey = '';
  private ln2Nonzero: boolean | undefined;
  private disposed = false;

  /** Every tensor of this configuration, from OPT's parameter table. */
  readonly params: readonly Param[];
  /** The LoRA modules this configuration offers, from the same table. */
  readonly loraLayout: LoraLayout;

  private constructor(
    readonly config: OptConfig,
    readonly weights: ModelWeights,
    readonly kernels: Kernels,
    readonly device: ResolvedDevice,
  ) {
    this.params = expandParams(OPT_PARAMS, config);
    this.loraLayout = loraLayout(OPT_PARAMS, config);
  }

  /** A Hugging Face model folder, or a hub id resolved into the HF cache. */
  /** The folder or hub id the model came from, recorded in saved adapters. */
  source: string | undefined;

  static async fromPretrained(idOrDir: string, o: LoadOptions = {}): Promise<OptForCausalLM> {
    const dir = await resolveModelDir(idOrDir, {
      files: MODEL_FILES,
      cacheDir: o.cacheDir,
      revision: o.revision,
      onProgress: (event: HubProgressEvent) => o.onProgress?.({ type: 'resolve', event }),
    });
    const config = await loadOptConfig(dir);
    const quant = await readQuantizationConfig(dir);
    const source = await openWeights(dir);
    try {
      // A quantized checkpoint loads in its own format unless the caller asked for another.
      const model = await OptForCausalLM.fromWeights(config, source, { ...o, dtype: o.dtype ?? quant?.format }, quant);
      model.source = idOrDir;
      return model;
    } finally {
      await source.close();
    }
  }

  static async fromWeights(config: OptConfig, source: WeightSource, o: LoadOptions = {}, quant?: QuantizationConfig): Promise<OptForCausalLM> {
    const device = resolveDevice(o.device ?? 'auto');
    const kernels = bindKernels(device.backend);
    const dtype = o.dtype ?? 'f32';
    const weights = await loadModelWeights(config, source, kernels, {
      dtype,
      quant,
      device: device.memory,
      // The host backends read bf16p; CUDA and the emulator take plain bf16.
      packBf16: (o.packWeights ?? true) && (device.backend === 'cpu' || device.backend === 'ref'),
      onTensor: (name, index, total) => o.onProgress?.({ type: 'weights', name, index, total }),
    });
    // What loading freed (cached f32 blocks, the heap pages behind them) goes back to the system.
    native().emptyCache(device.memory);
    const model = new OptForCausalLM(config, weights, kernels, device);
    o.onProgress?.({ type: 'ready', device, dtype, parameters: model.baseParameters() });
    return model;
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

  addLora(o: LoraOptions): LoraAdapter {
    this.assertLive();
    if (this.lora) throw new LoraError('E_CONFIG', 'this model already has a LoRA adapter; dispose it with removeLora() first');
    this.lora = new LoraAdapter(this.loraLayout, o, this.device.memory);
    this.dropWorkspace();
    return this.lora;
  }

  /**
   * KV-cached decoding of one prompt (token ids, bos included); dropout off. Yields to the event
   * loop between tokens; `o.signal` aborts between tokens.
   */
  generate(prompt: readonly number[], o: GenerateOptions = {}): Promise<GenerateResult> {
    this.assertLive();
    const c = this.config;
    return decode(prompt, o, (capacity) => this.decoder(capacity), { vocabSize: c.vocabSize, maxPositions: c.maxPositionEmbeddings, eosTokenId: c.eosTokenId });
  }

  /**
   * Writes the quantized base (int8/int4/nf4) as a model folder that loads again quantized, without
   * the f32 checkpoint. The adapter is not included (save it with saveAdapter).
   */
  async saveQuantized(dir: string): Promise<void> {
    this.assertLive();
    const quantized = this.params.filter((p) => p.quantizable);
    const linears = quantized.map((p) => ({ name: p.name, ...slotOf(this.weights, p) }) as { name: string; tensor: NativeTensor; rows?: [number, number] });
    const names = new Set(quantized.map((p) => p.name));
    // The plain tensors of the base, without any adapter merged in.
    const plain = new Map([...mergedTensors({ params: this.params, weights: this.weights, kernels: this.kernels, lora: undefined })].filter(([name]) => !names.has(name)));
    await saveQuantizedBase(dir, optConfigToJson(this.config), this.weights.dtype, linears, plain);
  }

  /** Writes a plain model folder (config.json + model.safetensors) from tensors under this model's checkpoint names. */
  async writeModel(dir: string, tensors: Map<string, RawTensor>): Promise<void> {
    await writeOptModel(dir, this.config, tensors);
  }

  /** Writes the adapter in PEFT's format (adapter_config.json + adapter_model.safetensors). */
  async saveAdapter(dir: string, baseModel: string | null = this.source ?? null): Promise<void> {
    if (!this.lora) throw new LoraError('E_CONFIG', 'this model has no LoRA adapter to save (call addLora or loadAdapter first)');
    await saveAdapter(this.lora, dir, baseModel);
  }

  /** Loads a PEFT LoRA adapter folder (ours or Python PEFT's) onto this model. */
  async loadAdapter(dir: string): Promise<LoraAdapter> {
    this.assertLive();
    const options = await readAdapterConfig(dir, this.loraLayout.targets);
    const lora = new LoraAdapter(this.loraLayout, { ...options, initLoraWeights: 'gaussian' }, this.device.memory);
    try {
      await loadAdapterWeights(lora, dir, this.config);
    } catch (e) {
      lora.dispose();
      throw e;
    }
    this.removeLora();
    this.lora = lora;
    return lora;
  }

  removeLora(): void {
    this.lora?.dispose();
    this.lora = undefined;
    this.dropWorkspace();
  }

  /** Forward (and optionally backward) over one batch. */
  step(batch: ModelBatch, o: StepOptions = {}): StepResult {
    this.assertLive();
    validateBatch(batch, this.config);
    const k = this.kernels;
    const c = this.config;
    const w = this.weights;
    const ws = this.workspace(batch.batch, batch.seq, o.checkpointing ?? false);
    this.upload(batch, ws);
    const training = o.training ?? false;
    const seed = o.seed ?? 0;
    const dropFor = (layer: number): LayerDropout | undefined =>
      training ? { seed, residualP: c.dropout, layer } : undefined;
    this.forward(ws, dropFor);
    const hFinal = this.final(ws.out, ws.hFinal, ws.finalMean, ws.finalRstd);
    const backward = (o.backward ?? false) && this.lora !== undefined;
    const gradScale = o.gradScale ?? 1;
    const logits = o.logits ? native().Tensor.empty('f32', [ws.M, c.vocabSize], this.device.memory) : undefined;
    try {
      const { lossSum, count: counted } = k.crossEntropy(hFinal, w.lmHead, ws.targets, {
        gradScale,
        dh: backward ? ws.dFinal : undefined,
        logits,
      });
      if (logits && o.logits) {
        const arr = logits.toArray() as Float32Array;
        if (o.logits.length !== arr.length) throw new LoraError('E_SHAPE', `logits buffer has ${o.logits.length} elements, needs ${arr.length}`);
        o.logits.set(arr);
      }
      if (backward) this.backward(ws, dropFor, o.checkpointing ?? false);
      return { loss: counted > 0 ? lossSum / counted : Number.NaN, lossSum, count: counted };
    } finally {
      logits?.dispose();
    }
  }

  /**
   * Embeddings and every layer over the workspace's rows (uploaded), into ws.out. With `kv`
   * (decoding) each layer attends over its cached keys and values.
   */
  private forward(ws: Workspace, dropFor: (layer: number) => LayerDropout | undefined, kv?: KvCache[]): void {
    const k = this.kernels;
    const c = this.config;
    const w = this.weights;
    // Embeddings: tokens (project_in when E != C) + learned positions.
    const x0 = ws.caches[0].xIn;
    if (w.projIn) {
      k.embedding(ws.ids, w.embed, ws.embedOut);
      k.linear(ws.embedOut, w.projIn, undefined, x0);
      k.embedding(ws.posIds, w.pos, ws.posOut);
      k.add(x0, ws.posOut, x0);
    } else {
      k.embedding(ws.ids, w.embed, x0, { ids: ws.posIds, table: w.pos });
    }
    const L = c.numHiddenLayers;
    for (let i = 0; i < L; i++) {
      const out = i + 1 < L ? ws.caches[i + 1].xIn : ws.out;
      layerForward(k, c, w.layers[i], this.lora, i, ws.caches[i], ws, out, dropFor(i), kv?.[i]);
    }
  }

  /** The input of lm_head from the last layer's output x: pre-LN's final layer norm, post-LN's project_out, or x. */
  private final(x: NativeTensor, h: NativeTensor, mean: NativeTensor, rstd: NativeTensor): NativeTensor {
    const c = this.config;
    const w = this.weights;
    if (w.finalLnG || (c.doLayerNormBefore && !c.removeFinalLayerNorm)) {
      this.kernels.layerNorm(x, w.finalLnG, w.finalLnB, LN_EPS, h, mean, rstd);
      return h;
    }
    if (w.projOut) {
      this.kernels.linear(x, w.projOut, undefined, h);
      return h;
    }
    return x;
  }

  /**
   * A decoder over this model's own blocks: KV caches of `capacity` positions per layer, and a
   * workspace per row count (the prompt's, then one row per token) with one shared layer cache.
   * q/k/v stay f32 here (the decode attention reads f32).
   */
  private decoder(capacity: number): DecodeTarget {
    const c = this.config;
    const k = this.kernels;
    const { Tensor } = native();
    const dev = this.device.memory;
    const owned: NativeTensor[] = [];
    const f32 = (...shape: number[]) => (owned.push(Tensor.empty('f32', shape, dev)), owned[owned.length - 1]);
    const C = c.hiddenSize;
    const caches = Array.from({ length: c.numHiddenLayers }, () => ({ k: f32(1, capacity, C), v: f32(1, capacity, C) }));
    let ws: Workspace | undefined;
    const drop = () => {
      if (ws) for (const t of ws.all) t.dispose();
      ws = undefined;
    };
    return {
      run: (ids, past) => {
        const n = ids.length;
        if (ws?.T !== n) {
          drop();
          ws = createWorkspace(c, this.lora, 1, n, dev, true, false, false);
        }
        this.upload({ batch: 1, seq: n, inputIds: Int32Array.from(ids) }, ws, past);
        this.forward(ws, () => undefined, caches.map((kv) => ({ ...kv, past })));
        // Only the last row's logits are needed.
        using last = ws.out.narrow(0, n - 1, 1);
        using h = Tensor.empty('f32', [1, c.wordEmbedProjDim], dev);
        using mean = Tensor.empty('f32', [1], dev);
        using rstd = Tensor.empty('f32', [1], dev);
        using logits = Tensor.empty('f32', [1, c.vocabSize], dev);
        k.linear(this.final(last, h, mean, rstd), this.weights.lmHead, undefined, logits);
        return logits.toArray() as Float32Array;
      },
      close: () => {
        drop();
        for (const t of owned) t.dispose();
      },
    };
  }

  private backward(ws: Workspace, dropFor: (layer: number) => LayerDropout | undefined, checkpointing: boolean): void {
    const k = this.kernels;
    const c = this.config;
    const w = this.weights;
    let dOut = ws.dOut;
    let dX = ws.dOutB;
    if (w.finalLnG || (c.doLayerNormBefore && !c.removeFinalLayerNorm)) {
      k.layerNormBackward(ws.dFinal, ws.out, w.finalLnG, ws.finalMean, ws.finalRstd, dOut);
    } else if (w.projOut) {
      k.linearBackward(ws.dFinal, ws.out, w.projOut, dOut, false);
    } else {
      k.scale(ws.dFinal, 1, dOut);
    }
    for (let i = c.numHiddenLayers - 1; i >= 0; i--) {
      if (checkpointing) {
        // Recompute this layer's caches from its stored input (same dropout seeds → same masks);
        // its output is not needed again, so it goes to scratch.
        layerForward(k, c, w.layers[i], this.lora, i, ws.caches[i], ws, ws.recompute!, dropFor(i));
      }
      const out = i + 1 < c.numHiddenLayers ? ws.caches[i + 1].xIn : ws.out;
      layerBackward(k, c, w.layers[i], this.lora, i, ws.caches[i], ws, out, dOut, i > 0 ? dX : undefined, dropFor(i));
      [dOut, dX] = [dX, dOut];
    }
  }

  /** ids, mask, targets and positions of a batch into the workspace; `past` offsets the positions (decoding). */
  private upload(b: ModelBatch, ws: Workspace, past = 0): void {
    const M = ws.M;
    const mask = b.attentionMask ?? new Int32Array(M).fill(1);
    const pos = new Int32Array(M);
    for (let r = 0; r < b.batch; r++) {
      // HF OPT: positions = cumsum(mask) * mask - 1, then + 2 (learned-position offset).
      let run = 0;
      for (let t = 0; t < b.seq; t++) {
        const i = r * b.seq + t;
        run += mask[i] ? 1 : 0;
        pos[i] = (mask[i] ? run : 0) - 1 + 2 + past;
      }
    }
    const targets = new Int32Array(M).fill(IGNORE_INDEX);
    if (b.labels) {
      for (let r = 0; r < b.batch; r++) for (let t = 0; t + 1 < b.seq; t++) targets[r * b.seq + t] = b.labels[r * b.seq + t + 1];
    }
    ws.ids.copyFrom(b.inputIds);
    ws.posIds.copyFrom(pos);
    ws.mask.copyFrom(mask);
    ws.targets.copyFrom(targets);
  }

  private workspace(B: number, T: number, checkpointing: boolean): Workspace {
    const key = `${B}x${T}:${checkpointing}`;
    if (this.ws && this.wsKey === key) return this.ws;
    this.dropWorkspace();
    this.ws = createWorkspace(this.config, this.lora, B, T, this.device.memory, checkpointing, autocast(this.weights.layers[0].qkvW), this.ln2Invertible());
    this.wsKey = key;
    return this.ws;
  }

  /** Whether every layer's final_layer_norm gamma is nonzero (its backward can run from the output). */
  private ln2Invertible(): boolean {
    this.ln2Nonzero ??= this.weights.layers.every((l) => l.ln2G !== undefined && (l.ln2G.toArray() as Float32Array).every((g) => g !== 0));
    return this.ln2Nonzero;
  }

  private dropWorkspace(): void {
    if (this.ws) for (const t of this.ws.all) t.dispose();
    this.ws = undefined;
    this.wsKey = '';
  }

  private assertLive(): void {
    if (this.disposed) throw new LoraError('E_CONFIG', 'model was disposed');
  }

  /** Native bytes held by the base weights (what a quantized format saves). */
  baseBytes(): number {
    return weightTensors(this.weights).reduce((n, t) => n + t.nbytes + (t.scales()?.byteLength ?? 0), 0);
  }

  dispose(): void {
    if (this.disposed) return;
    this.dropWorkspace();
    this.lora?.dispose();
    this.lora = undefined;
    for (const t of weightTensors(this.weights)) t.dispose();
    this.kernels.dispose();
    this.disposed = true;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function validateBatch(b: ModelBatch, c: OptConfig): void {
  const n = b.batch * b.seq;
  if (!Number.isInteger(b.batch) || b.batch < 1) throw new LoraError('E_SHAPE', `batch must be a positive integer, got ${b.batch}`);
  if (!Number.isInteger(b.seq) || b.seq < 1) throw new LoraError('E_SHAPE', `seq must be a positive integer, got ${b.seq}`);
  if (b.seq > c.maxPositionEmbeddings) throw new LoraError('E_SHAPE', `seq ${b.seq} exceeds the model's ${c.maxPositionEmbeddings} positions`);
  if (b.inputIds.length !== n) throw new LoraError('E_SHAPE', `inputIds has ${b.inputIds.length} ids, expected batch*seq = ${n}`);
  if (b.attentionMask && b.attentionMask.length !== n) throw new LoraError('E_SHAPE', `attentionMask has ${b.attentionMask.length} entries, expected ${n}`);
  if (b.labels && b.labels.length !== n) throw new LoraError('E_SHAPE', `labels has ${b.labels.length} entries, expected ${n}`);
  for (let i = 0; i < n; i++) {
    const id = b.inputIds[i];
    if (id < 0 || id >= c.vocabSize) throw new LoraError('E_SHAPE', `inputIds[${i}] = ${id} is outside the vocabulary [0, ${c.vocabSize})`);
    if (b.labels) {
      const l = b.labels[i];
      if (l !== IGNORE_INDEX && (l < 0 || l >= c.vocabSize)) throw new LoraError('E_SHAPE', `labels[${i}] = ${l} is neither -100 nor a token id`);
    }
  }
}
