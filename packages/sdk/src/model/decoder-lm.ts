// The part of a decoder-only causal LM that no family changes: the step (upload, embeddings, the
// layers, the final norm, the fused lm_head + cross-entropy, the backward with optional activation
// checkpointing), KV-cached decoding through the same blocks, adapters, quantized save, disposal.
// A family (models/opt.ts, ...) extends it with its config, parameter table, embeddings, block
// and workspace. Only LoRA parameters get gradients: the base is frozen.
import { native, type NativeTensor } from '@lora/core-native';

import { IGNORE_INDEX } from '../data/batches.js';
import { resolveModelDir } from '../hub/resolve.js';
import { MODEL_FILES } from '../hub/selection.js';
import type { HubProgressEvent } from '../hub/progress.js';
import { LoraError } from '../io/errors.js';
import { openWeights } from '../io/open-weights.js';
import type { RawTensor, WeightSource } from '../io/tensor.js';
import type { CausalLM, CausalLMConfig, GenerateOptions, GenerateResult, LoadOptions, ModelBatch, StepOptions, StepResult } from '../models/causal-lm.js';
import { expandParams, loraLayout, slotOf, type LoraLayout, type Param, type ParamTable } from '../models/params.js';
import { allocateRowCache, raggedForward, rowCacheBytes, type RaggedBlock, type RaggedRow, type RaggedStepOptions, type RowKvCache } from '../models/batch-step.js';
import { loadAdapterWeights, readAdapterConfig, saveAdapter } from './adapter-io.js';
import { autocast, bindKernels } from './bind-kernels.js';
import { resolveDevice, type ResolvedDevice } from './device.js';
import type { LayerDropout } from './dropout.js';
import { decode, type DecodeTarget } from './generate.js';
import type { Kernels, KvCache } from './kernels.js';
import { LoraAdapter, type LoraOptions } from './lora.js';
import { mergedTensors } from './merge.js';
import { readQuantizationConfig, saveQuantizedBase, type QuantizationConfig } from './quantized-io.js';
import { weightTensors, type LoadWeightOptions } from './weights.js';

/** The buffers every family's step uses; a family's workspace adds its own. */
export interface StepWorkspace {
  B: number;
  T: number;
  M: number;
  ids: NativeTensor; // i32 [M]
  posIds: NativeTensor; // i32 [M]
  mask: NativeTensor; // i32 [M]
  targets: NativeTensor; // i32 [M]
  /** Each layer's input [M, C] (layer i's output is layer i+1's input; the last one's is `out`). */
  inputs: NativeTensor[];
  out: NativeTensor; // [M, C]
  hFinal: NativeTensor; // [M, E] lm_head's input
  finalMean: NativeTensor; // [M] the final norm's statistics
  finalRstd: NativeTensor;
  /** [M, C] where a recomputed (checkpointed) layer writes its unused output. */
  recompute?: NativeTensor;
  dOut: NativeTensor; // [M, C] grad flowing down the layers (two buffers, alternating)
  dOutB: NativeTensor;
  dFinal: NativeTensor; // [M, E]
  all: NativeTensor[];
}

/** The frozen base by role: a family's globals (lmHead among them) and its layers. */
export interface BaseWeights {
  readonly lmHead: NativeTensor;
  readonly layers: readonly object[];
  readonly dtype: import('./device.js').BaseDType;
}

/** A model folder resolved and opened: its quantization config and weights (close `source` after loading). */
export async function openPretrained(idOrDir: string, o: LoadOptions): Promise<{ dir: string; quant: QuantizationConfig | undefined; source: WeightSource }> {
  const dir = await resolveModelDir(idOrDir, {
    files: MODEL_FILES,
    cacheDir: o.cacheDir,
    revision: o.revision,
    onProgress: (event: HubProgressEvent) => o.onProgress?.({ type: 'resolve', event }),
  });
  const quant = await readQuantizationConfig(dir);
  return { dir, quant, source: await openWeights(dir) };
}

/** The device, its kernels and the weight-loading options the load options ask for. */
export function bindDevice(o: LoadOptions): { device: ResolvedDevice; kernels: Kernels } {
  const device = resolveDevice(o.device ?? 'auto');
  return { device, kernels: bindKernels(device.backend) };
}

/** The weight-loading options every family's loader takes (the family adds its own roles). */
export type FamilyWeightOptions = Pick<LoadWeightOptions, 'dtype' | 'device' | 'quant' | 'packBf16' | 'onTensor'>;

/** What a family supplies for loading: its config reader, its weight loader and its constructor. */
export interface FamilyLoader<C, W, M extends { source: string | undefined; baseParameters(): number }> {
  loadConfig(dir: string): Promise<C>;
  loadWeights(config: C, source: WeightSource, kernels: Kernels, o: FamilyWeightOptions): Promise<W>;
  create(config: C, weights: W, kernels: Kernels, device: ResolvedDevice): M;
}

/** A family's model from a Hugging Face folder or hub id (what every `fromPretrained` does). */
export async function loadPretrained<C, W, M extends { source: string | undefined; baseParameters(): number }>(
  family: FamilyLoader<C, W, M>, idOrDir: string, o: LoadOptions,
): Promise<M> {
  const { dir, quant, source } = await openPretrained(idOrDir, o);
  try {
    const config = await family.loadConfig(dir);
    // A quantized checkpoint loads in its own format unless the caller asked for another.
    const model = await loadFromWeights(family, config, source, { ...o, dtype: o.dtype ?? quant?.format }, quant);
    model.source = idOrDir;
    return model;
  } finally {
    await source.close();
  }
}

/** A family's model from a parsed config and a weight source (what every `fromWeights` does). */
export async function loadFromWeights<C, W, M extends { source: string | undefined; baseParameters(): number }>(
  family: FamilyLoader<C, W, M>, config: C, source: WeightSource, o: LoadOptions, quant?: QuantizationConfig,
): Promise<M> {
  const { device, kernels } = bindDevice(o);
  const dtype = o.dtype ?? 'f32';
  const weights = await family.loadWeights(config, source, kernels, {
    dtype,
    quant,
    device: device.memory,
    // The host backends read bf16p; CUDA and the emulator take plain bf16.
    packBf16: (o.packWeights ?? true) && (device.backend === 'cpu' || device.backend === 'ref'),
    onTensor: (name, index, total) => o.onProgress?.({ type: 'weights', name, index, total }),
  });
  // What loading freed (cached f32 blocks, the heap pages behind them) goes back to the system.
  native().emptyCache(device.memory);
  const model = family.create(config, weights, kernels, device);
  o.onProgress?.({ type: 'ready', device, dtype, parameters: model.baseParameters() });
  return model;
}

export abstract class DecoderLM<C extends CausalLMConfig, W extends BaseWeights, WS extends StepWorkspace> implements CausalLM {
  abstract readonly modelType: string;
  lora: LoraAdapter | undefined;
  /** The folder or hub id the model came from, recorded in saved adapters. */
  source: string | undefined;
  /** Every tensor of this configuration, from the family's parameter table. */
  readonly params: readonly Param[];
  /** The LoRA modules this configuration offers, from the same table. */
  readonly loraLayout: LoraLayout;
  private ws: WS | undefined;
  private wsKey = '';
  private disposed = false;

  protected constructor(
    readonly config: C,
    readonly weights: W,
    readonly kernels: Kernels,
    readonly device: ResolvedDevice,
    table: ParamTable<C>,
  ) {
    this.params = expandParams(table, config);
    this.loraLayout = loraLayout(table, config);
  }

  // ---- What a family writes.

  /** Parameters of the base model (a tied head counted once), as PEFT's "all params". */
  abstract baseParameters(): number;
  /** The config.json transformers would write for this config. */
  abstract configJson(): Record<string, unknown>;
  /** Writes a plain model folder (config.json + model.safetensors) from tensors under the table's names. */
  abstract writeModel(dir: string, tensors: Map<string, RawTensor>): Promise<void>;
  /** The residual dropout probability while training. */
  protected abstract residualDropout(): number;
  /** The position id of a token: `count` real tokens so far in its row (1-based; 0 for padding), `past` cached before the call. */
  protected abstract positionId(count: number, real: boolean, past: number): number;
  /** Buffers for a batch shape; `decoding`: forward only, q/k/v in what the cached attention reads. */
  protected abstract createWorkspace(B: number, T: number, o: { checkpointing: boolean; decoding: boolean }): WS;
  /** Token (and position) embeddings into ws.inputs[0]. */
  protected abstract embed(ws: WS): void;
  /** Layer i's forward from ws.inputs[i] into `out`; with `kv` over the layer's KV cache (decoding). */
  protected abstract layerForward(i: number, ws: WS, out: NativeTensor, drop: LayerDropout | undefined, kv?: KvCache): void;
  /** Layer i's backward: dOut consumed, dx written (undefined for the first layer: LoRA grads only). */
  protected abstract layerBackward(i: number, ws: WS, out: NativeTensor, dOut: NativeTensor, dx: NativeTensor | undefined, drop: LayerDropout | undefined): void;
  /** lm_head's input from the last layer's output x (a final norm, a projection, or x itself). */
  protected abstract final(x: NativeTensor, h: NativeTensor, mean: NativeTensor, rstd: NativeTensor): NativeTensor;
  /** The final step's backward: ws.dFinal → dOut. */
  protected abstract finalBackward(ws: WS, dOut: NativeTensor): void;
  /** Width of one layer's cached keys (and values) per position. */
  protected abstract kvWidth(): number;
  /** Width of lm_head's input. */
  protected abstract headWidth(): number;
  /** The family's block over a ragged batch (models/batch-step.ts), for serving; undefined: none yet. */
  protected raggedBlock(): RaggedBlock | undefined {
    return undefined;
  }

  // ---- Shared by every family.

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
    return decode(prompt, o, (capacity) => this.decoder(capacity), { vocabSize: c.vocabSize, maxPositions: c.maxPositionEmbeddings, eosTokenIds: c.eosTokenIds ?? [c.eosTokenId] });
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
    await saveQuantizedBase(dir, this.configJson(), this.weights.dtype, linears, plain);
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
    const checkpointing = o.checkpointing ?? false;
    const ws = this.workspace(batch.batch, batch.seq, checkpointing);
    this.upload(batch, ws);
    const training = o.training ?? false;
    const seed = o.seed ?? 0;
    const residualP = this.residualDropout();
    const dropFor = (layer: number): LayerDropout | undefined => (training ? { seed, residualP, layer } : undefined);
    this.forward(ws, dropFor);
    const hFinal = this.final(ws.out, ws.hFinal, ws.finalMean, ws.finalRstd);
    const backward = (o.backward ?? false) && this.lora !== undefined;
    const logits = o.logits ? native().Tensor.empty('f32', [ws.M, c.vocabSize], this.device.memory) : undefined;
    try {
      const { lossSum, count } = k.crossEntropy(hFinal, this.weights.lmHead, ws.targets, { gradScale: o.gradScale ?? 1, dh: backward ? ws.dFinal : undefined, logits });
      if (logits && o.logits) {
        const arr = logits.toArray() as Float32Array;
        if (o.logits.length !== arr.length) throw new LoraError('E_SHAPE', `logits buffer has ${o.logits.length} elements, needs ${arr.length}`);
        o.logits.set(arr);
      }
      if (backward) this.backward(ws, dropFor, checkpointing);
      return { loss: count > 0 ? lossSum / count : Number.NaN, lossSum, count };
    } finally {
      logits?.dispose();
    }
  }

  /** Embeddings and every layer over the workspace's rows, into ws.out; with `kv`, over the KV caches. */
  private forward(ws: WS, dropFor: (layer: number) => LayerDropout | undefined, kv?: KvCache[]): void {
    this.embed(ws);
    const L = ws.inputs.length;
    for (let i = 0; i < L; i++) this.layerForward(i, ws, i + 1 < L ? ws.inputs[i + 1] : ws.out, dropFor(i), kv?.[i]);
  }

  private backward(ws: WS, dropFor: (layer: number) => LayerDropout | undefined, checkpointing: boolean): void {
    let dOut = ws.dOut;
    let dX = ws.dOutB;
    this.finalBackward(ws, dOut);
    const L = ws.inputs.length;
    for (let i = L - 1; i >= 0; i--) {
      // Recompute this layer's caches from its stored input (same dropout seeds → same masks);
      // its output is not needed again, so it goes to scratch.
      if (checkpointing) this.layerForward(i, ws, ws.recompute!, dropFor(i));
      this.layerBackward(i, ws, i + 1 < L ? ws.inputs[i + 1] : ws.out, dOut, i > 0 ? dX : undefined, dropFor(i));
      [dOut, dX] = [dX, dOut];
    }
  }

  /**
   * A decoder over this model's own blocks: KV caches of `capacity` positions per layer, and a
   * workspace per row count (the prompt's, then one row per token).
   */
  private decoder(capacity: number): DecodeTarget {
    const c = this.config;
    const { Tensor } = native();
    const dev = this.device.memory;
    const caches = Array.from({ length: c.numHiddenLayers }, () => ({
      k: Tensor.empty('f32', [1, capacity, this.kvWidth()], dev),
      v: Tensor.empty('f32', [1, capacity, this.kvWidth()], dev),
    }));
    let ws: WS | undefined;
    const drop = () => {
      if (ws) for (const t of ws.all) t.dispose();
      ws = undefined;
    };
    return {
      run: (ids, past) => {
        const n = ids.length;
        if (ws?.T !== n) {
          drop();
          ws = this.createWorkspace(1, n, { checkpointing: true, decoding: true });
        }
        this.upload({ batch: 1, seq: n, inputIds: Int32Array.from(ids) }, ws, past);
        this.forward(ws, () => undefined, caches.map((kv) => ({ ...kv, past })));
        // Only the last row's logits are needed.
        using last = ws.out.narrow(0, n - 1, 1);
        using h = Tensor.empty('f32', [1, this.headWidth()], dev);
        using mean = Tensor.empty('f32', [1], dev);
        using rstd = Tensor.empty('f32', [1], dev);
        using logits = Tensor.empty('f32', [1, c.vocabSize], dev);
        this.kernels.linear(this.final(last, h, mean, rstd), this.weights.lmHead, undefined, logits);
        return logits.toArray() as Float32Array;
      },
      close: () => {
        drop();
        for (const kv of caches) (kv.k.dispose(), kv.v.dispose());
      },
    };
  }

  // ---- The ragged-batch step (lora serve): rows with their own KV caches, positions and adapters.

  /** Bytes one row's KV cache of `capacity` positions holds. */
  rowCacheBytes(capacity: number): number {
    return rowCacheBytes(this.config.numHiddenLayers, this.kvWidth(), capacity);
  }

  /** One row's KV cache for every layer, `capacity` positions (at most the model's). */
  allocateRowCache(capacity: number): RowKvCache {
    this.assertLive();
    return allocateRowCache(this.device.memory, this.config.numHiddenLayers, this.kvWidth(), capacity, this.config.maxPositionEmbeddings);
  }

  /** Whether this family has a ragged-batch block (so raggedStep runs; lora serve needs it). */
  hasRaggedStep(): boolean {
    return this.raggedBlock() !== undefined;
  }

  /** Whether the linears compute under bf16 autocast (a bf16 or quantized base). */
  baseAutocast(): boolean {
    const p = this.params.find((q) => q.quantizable && q.layer !== undefined);
    const t = p && slotOf(this.weights, p).tensor;
    return t !== undefined && autocast(t);
  }

  /**
   * One forward over a ragged batch through this family's block, pausing after each layer; returns
   * each row's last-token logits (undefined where not wanted) and advances the rows' caches. Refused
   * with E_CONFIG for a family without a ragged-batch block.
   */
  raggedStep(rows: readonly RaggedRow[], o: RaggedStepOptions): Generator<void, (Float32Array | undefined)[], void> {
    this.assertLive();
    const block = this.raggedBlock();
    if (!block) throw new LoraError('E_CONFIG', `the '${this.modelType}' family has no ragged-batch block yet (models/batch-step.ts), so lora serve cannot run it`);
    const c = this.config;
    return raggedForward({
      kernels: this.kernels, device: this.device, vocabSize: c.vocabSize, numLayers: c.numHiddenLayers, hiddenSize: c.hiddenSize,
      lmHead: this.weights.lmHead, headWidth: this.headWidth(), block,
      positionId: (t, past) => this.positionId(t + 1, true, past),
      final: (x, h, mean, rstd) => this.final(x, h, mean, rstd),
    }, rows, o);
  }

  /** ids, mask, targets and positions of a batch into the workspace; `past` offsets the positions (decoding). */
  private upload(b: ModelBatch, ws: WS, past = 0): void {
    const M = ws.M;
    const mask = b.attentionMask ?? new Int32Array(M).fill(1);
    const pos = new Int32Array(M);
    for (let r = 0; r < b.batch; r++) {
      let count = 0;
      for (let t = 0; t < b.seq; t++) {
        const i = r * b.seq + t;
        count += mask[i] ? 1 : 0;
        pos[i] = this.positionId(mask[i] ? count : 0, mask[i] !== 0, past);
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

  private workspace(B: number, T: number, checkpointing: boolean): WS {
    const key = `${B}x${T}:${checkpointing}`;
    if (this.ws && this.wsKey === key) return this.ws;
    this.dropWorkspace();
    this.ws = this.createWorkspace(B, T, { checkpointing, decoding: false });
    this.wsKey = key;
    return this.ws;
  }

  private dropWorkspace(): void {
    if (this.ws) for (const t of this.ws.all) t.dispose();
    this.ws = undefined;
    this.wsKey = '';
  }

  protected assertLive(): void {
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

function validateBatch(b: ModelBatch, c: CausalLMConfig): void {
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
