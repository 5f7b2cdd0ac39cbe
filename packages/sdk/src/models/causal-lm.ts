// The architecture-neutral model boundary: what the Trainer, generation, eval, `lora check`, adapters
// and merge use of a causal language model, whatever its family. A family (OPT, ...) implements it;
// AutoModelForCausalLM (models/auto.ts) picks the family from config.json's model_type.
import type { ResolveOptions } from '../hub/resolve.js';
import type { HubProgressEvent } from '../hub/progress.js';
import type { RawTensor } from '../io/tensor.js';
import type { BaseDType, DeviceOption, ResolvedDevice } from '../model/device.js';
import type { Kernels } from '../model/kernels.js';
import type { LoraAdapter, LoraOptions } from '../model/lora.js';
import type { LoraLayout, Param } from './params.js';

export type LoadProgressEvent =
  | { type: 'resolve'; event: HubProgressEvent }
  | { type: 'weights'; name: string; index: number; total: number }
  | { type: 'ready'; device: ResolvedDevice; dtype: BaseDType; parameters: number };

export interface LoadOptions extends Pick<ResolveOptions, 'cacheDir' | 'revision'> {
  device?: DeviceOption;
  /**
   * Base weight format (default f32). With bf16 or a quantised format the linears compute in bf16
   * like torch.autocast(bf16): their inputs are rounded to bf16, LoRA included, with f32
   * accumulation; norms, softmax, the residual stream and the loss stay f32.
   */
  dtype?: BaseDType;
  /**
   * On the cpu (and ref) backends, store bf16 linear weights pre-packed in the GEMM's panel layout
   * (dtype 'bf16p', the same bytes), so no forward or backward product packs a frozen weight again.
   * Results are bit-identical either way. Default true; weights whose rows are not whole 64-row
   * panels stay plain bf16.
   */
  packWeights?: boolean;
  onProgress?: (e: LoadProgressEvent) => void;
}

/** A batch as the model takes it: row-major [batch, seq] i32 arrays. */
export interface ModelBatch {
  batch: number;
  seq: number;
  inputIds: Int32Array;
  attentionMask?: Int32Array;
  labels?: Int32Array;
}

export interface StepOptions {
  /** Dropout on (LoRA dropout and the model's residual dropout), seeded by `seed`. */
  training?: boolean;
  seed?: number;
  /** Run the backward and accumulate the LoRA grads of gradScale · (mean loss of this batch). */
  backward?: boolean;
  gradScale?: number;
  /** Receives the logits [batch, seq, vocab] (f32) when given. */
  logits?: Float32Array;
  /** Keep only each layer's input and recompute the rest in the backward (less memory, ~1/3 more compute). */
  checkpointing?: boolean;
}

export interface StepResult {
  /** Mean cross-entropy over counted tokens (HF's causal-LM loss). NaN when no token counts. */
  loss: number;
  lossSum: number;
  count: number;
}

export interface GenerateOptions {
  maxNewTokens?: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP (default 1). */
  topP?: number;
  /** Keep only the topK most likely tokens (default: all). */
  topK?: number;
  /** Generation stops after any of these ids (default: the model's eos). */
  stopTokens?: number[];
  seed?: number;
  /** Called with each new token id; return false to stop. */
  onToken?: (id: number) => boolean | void;
  /** Aborts between tokens: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface GenerateResult {
  /** New token ids (the stop token included when one ended the generation). */
  tokens: number[];
  stoppedBy: 'stop-token' | 'max-new-tokens' | 'max-positions' | 'callback';
  /** Time to first token (prefill + first sample) and total, in ms. */
  timeToFirstTokenMs: number;
  totalMs: number;
}

/** The config fields every family has (TypeScript names of transformers' PretrainedConfig ones). */
export interface CausalLMConfig {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  padTokenId: number;
  bosTokenId: number;
  eosTokenId: number;
  /** Every id that ends a generation by default, when the config lists several (Llama 3 instruct). */
  eosTokenIds?: number[];
  torchDtype: string | undefined;
}

export interface CausalLM extends Disposable {
  /** config.json's model_type ("opt", ...). */
  readonly modelType: string;
  readonly config: CausalLMConfig;
  /** Every base tensor of this configuration, from the family's parameter table. */
  readonly params: readonly Param[];
  /** The LoRA modules and targets the family offers (same table). */
  readonly loraLayout: LoraLayout;
  /** The frozen base in native memory, by the roles of the parameter table. */
  readonly weights: { readonly dtype: BaseDType; readonly layers: readonly object[] };
  readonly kernels: Kernels;
  readonly device: ResolvedDevice;
  readonly lora: LoraAdapter | undefined;
  /** The folder or hub id the model came from, recorded in saved adapters. */
  source: string | undefined;

  /** Parameters of the base model (a tied head counted once), as PEFT's "all params". */
  baseParameters(): number;
  /** Native bytes held by the base weights (what a quantized format saves). */
  baseBytes(): number;
  addLora(o: LoraOptions): LoraAdapter;
  removeLora(): void;
  /** Loads a PEFT LoRA adapter folder (ours or Python PEFT's) onto this model. */
  loadAdapter(dir: string): Promise<LoraAdapter>;
  /** Writes the adapter in PEFT's format (adapter_config.json + adapter_model.safetensors). */
  saveAdapter(dir: string, baseModel?: string | null): Promise<void>;
  /** Forward (and optionally backward) over one batch. */
  step(batch: ModelBatch, o?: StepOptions): StepResult;
  /** KV-cached decoding of one prompt (token ids, bos included); yields to the event loop between tokens. */
  generate(prompt: readonly number[], o?: GenerateOptions): Promise<GenerateResult>;
  /** Writes the quantized base (int8/int4/nf4) as a folder that loads again quantized. */
  saveQuantized(dir: string): Promise<void>;
  /** Writes a plain model folder (config.json + model.safetensors) from tensors under the table's names. */
  writeModel(dir: string, tensors: Map<string, RawTensor>): Promise<void>;
  dispose(): void;
}
