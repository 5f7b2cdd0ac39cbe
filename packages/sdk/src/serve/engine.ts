// The decode engine the server's scheduler drives: one forward over a ragged batch of rows, each row a
// request with its own KV cache, its own position and its own adapter (or none). A row brings one
// token (decode) or a chunk of its prompt (chunked prefill), so one call can mix both.
//
// The step itself is the model's (DecoderLM.raggedStep, models/batch-step.ts): written once on the
// shared decoder base, each family supplying its block over the batch, so every family the SDK loads
// (OPT, llama, qwen2, qwen3) is served by this one engine, which reads no family's weights. Rows of
// different adapters share each base product (S-LoRA / Punica); see serve/README.md.
import { LoraError } from '../io/errors.js';
import { DecoderLM, type BaseWeights, type StepWorkspace } from '../model/decoder-lm.js';
import type { LoraAdapter } from '../model/lora.js';
import type { CausalLM, CausalLMConfig } from '../models/causal-lm.js';
import type { RowKvCache } from '../models/batch-step.js';

/** One request's keys and values for every layer (the model's RowKvCache). */
export type KvCache = RowKvCache;

export interface ForwardRow {
  cache: KvCache;
  /** The tokens this row adds at positions past .. past + ids.length - 1. */
  ids: readonly number[];
  adapter?: LoraAdapter;
  /** Whether the last token's logits are wanted (false for a prefill chunk that is not the last). */
  wantLogits: boolean;
}

/** What the scheduler needs from a model (ModelDecodeEngine: every family; a test may bring its own). */
export interface DecodeEngine {
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosTokenId: number;
  /** Every id that ends a generation by default (generate()'s default stop set); default [eosTokenId]. */
  readonly eosTokenIds?: readonly number[];
  /** Bytes a cache of `capacity` positions holds (the scheduler's memory budget counts these). */
  kvBytes(capacity: number): number;
  allocate(capacity: number): KvCache;
  /** Runs every row's tokens; returns each row's last-token logits (undefined where not wanted) and advances the caches. */
  forward(rows: readonly ForwardRow[]): (Float32Array | undefined)[];
  /** forward() in pieces (e.g. one layer each) with the same result; the scheduler yields between them. */
  forwardSteps?(rows: readonly ForwardRow[]): Generator<void, (Float32Array | undefined)[], void>;
  /** Derives what the engine needs from a newly loaded adapter (so its memory is counted from load on). */
  prepare?(adapter: LoraAdapter): void;
  /** Drops anything derived from an adapter (called before the adapter is disposed). */
  forget?(adapter: LoraAdapter): void;
  dispose?(): void;
}

export interface EngineOptions {
  /**
   * Rows of different adapters share each base product (S-LoRA / Punica; default on: bit-identical
   * to generate() on every base format). Off: one fused base+LoRA product per adapter segment,
   * reading the base weights once per adapter in the batch.
   */
  shareBase?: boolean;
}

type DecoderModel = DecoderLM<CausalLMConfig, BaseWeights, StepWorkspace>;

/** The engine for any model on the shared decoder base (every family AutoModelForCausalLM loads). */
export class ModelDecodeEngine implements DecodeEngine {
  private readonly shareBase: boolean;
  private readonly model: DecoderModel;

  constructor(model: CausalLM, o: EngineOptions = {}) {
    if (!(model instanceof DecoderLM)) {
      throw new LoraError('E_CONFIG', `lora serve runs models on the shared decoder base (model/decoder-lm.ts); a '${model.modelType}' model is not one`);
    }
    this.model = model as unknown as DecoderModel;
    if (!this.model.hasRaggedStep()) {
      throw new LoraError('E_CONFIG', `the '${model.modelType}' family has no ragged-batch block (models/batch-step.ts), so lora serve cannot run it`);
    }
    // The segmented LoRA op is bit-identical to generate()'s fused kernel on every base format.
    this.shareBase = o.shareBase ?? true;
  }

  // No prepare/forget/dispose: the segmented op reads each adapter's A and B as they are, so the
  // engine derives and holds nothing per adapter (the B_bd copies of the composed path are gone).

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }
  get maxPositions(): number {
    return this.model.config.maxPositionEmbeddings;
  }
  get eosTokenId(): number {
    return this.model.config.eosTokenId;
  }
  get eosTokenIds(): readonly number[] {
    return this.model.config.eosTokenIds ?? [this.model.config.eosTokenId];
  }

  kvBytes(capacity: number): number {
    return this.model.rowCacheBytes(capacity);
  }

  allocate(capacity: number): KvCache {
    return this.model.allocateRowCache(capacity);
  }

  forward(input: readonly ForwardRow[]): (Float32Array | undefined)[] {
    const steps = this.forwardSteps(input);
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
    }
  }

  /**
   * The same forward, pausing after each layer: the scheduler yields to the event loop at every
   * pause, so a step blocks the loop for one layer at most. The caches and adapters of the rows must
   * stay alive until the generator is done (the scheduler defers their release).
   */
  forwardSteps(input: readonly ForwardRow[]): Generator<void, (Float32Array | undefined)[], void> {
    return this.model.raggedStep(input, { shareBase: this.shareBase });
  }
}

/** The engine's name from when it ran OPT only; the same engine, every family. */
export class OptDecodeEngine extends ModelDecodeEngine {}
