// The ragged-batch decode step every family shares (what `lora serve` runs): one forward over rows
// that are each a request with its own KV cache, its own position and its own adapter (or none). A
// row brings one token (decode) or a chunk of its prompt (chunked prefill), so one call mixes both.
// The family supplies its block over the batch (RaggedBlock: models/opt-batch.ts, llama-batch.ts);
// everything else - validation, adapter segments, positions, the shared-base LoRA products, the
// attention over each row's own cache (one ragged call per layer), the final norm and lm_head - is
// written here once.
//
// A row's math is generate()'s math: norms, rotations, attention and GEMM rows are row-independent,
// which the serve tests check token for token against generate() (OPT, llama, qwen3). Every linear
// is one native call (the segmented LoRA op, S-LoRA / Punica's SGMV): one base product over all
// rows, each adapter's low-rank part finishing its own row segment inside that product, so the base
// weights are read once per step whatever the mix of adapters, and every row is bit-identical to
// generate()'s fused base+LoRA kernel on every base format (f32, bf16, quantized).
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import { LoraError } from '../io/errors.js';
import type { ResolvedDevice } from '../model/device.js';
import type { Kernels, LoraSegment, LoraSpec } from '../model/kernels.js';
import type { LoraAdapter } from '../model/lora.js';

/** One request's keys and values for every layer: [1, capacity, kvWidth] f32 each. */
export interface RowKvCache {
  readonly capacity: number;
  /** Positions already written (the next token goes at `past`). */
  past: number;
  readonly bytes: number;
  readonly layers: readonly { k: NativeTensor; v: NativeTensor }[];
  dispose(): void;
}

export interface RaggedRow {
  cache: RowKvCache;
  /** The tokens this row adds at positions past .. past + ids.length - 1. */
  ids: readonly number[];
  adapter?: LoraAdapter;
  /** Whether the last token's logits are wanted (false for a prefill chunk that is not the last). */
  wantLogits: boolean;
}

/** A family's block over a ragged batch (its layer order; the batch gives linears and attention). */
export interface RaggedBlock {
  /** Token (and position) embeddings of every row into x [M, C]. */
  embed(b: RaggedBatch, x: NativeTensor): void;
  /** Layer i: x [M, C] in, out [M, C] written. */
  layer(b: RaggedBatch, i: number, x: NativeTensor, out: NativeTensor): void;
}

/** What the step needs from a model (DecoderLM.raggedStep fills it in from the family). */
export interface RaggedModel {
  kernels: Kernels;
  device: ResolvedDevice;
  vocabSize: number;
  numLayers: number;
  /** The residual stream's width. */
  hiddenSize: number;
  lmHead: NativeTensor;
  /** lm_head's input width. */
  headWidth: number;
  block: RaggedBlock;
  /** The position id of the token at `past` + t of a row (t from 0). */
  positionId(t: number, past: number): number;
  /** lm_head's input from the last layer's rows (the family's final norm or projection). */
  final(x: NativeTensor, h: NativeTensor, mean: NativeTensor, rstd: NativeTensor): NativeTensor;
}

export interface RaggedStepOptions {
  /** One base product over all rows, each adapter segment's LoRA inside it (S-LoRA); false: one fused product per segment. */
  shareBase: boolean;
}

interface Segment {
  start: number;
  len: number;
  adapter?: LoraAdapter;
}

/** One step's batch as a family block sees it: its rows, buffers, and the segmented linear and ragged attention. */
export class RaggedBatch {
  /** Rows grouped by adapter (each adapter's rows side by side), and where each starts. */
  readonly rows: readonly RaggedRow[];
  readonly offsets: readonly number[];
  /** Total rows of the batch (tokens over every request). */
  readonly M: number;
  readonly ids: NativeTensor; // i32 [M]
  readonly posIds: NativeTensor; // i32 [M]
  private readonly segments: Segment[] = [];
  private readonly bufs: NativeTensor[] = [];
  private readonly named = new Map<string, NativeTensor>();

  constructor(
    readonly kernels: Kernels,
    private readonly device: DeviceName,
    rows: readonly RaggedRow[],
    positionId: (t: number, past: number) => number,
    private readonly o: RaggedStepOptions,
  ) {
    this.rows = rows;
    const offsets: number[] = [];
    let M = 0;
    for (const r of rows) {
      offsets.push(M);
      const last = this.segments.at(-1);
      if (last && last.adapter === r.adapter) last.len += r.ids.length;
      else this.segments.push({ start: M, len: r.ids.length, adapter: r.adapter });
      M += r.ids.length;
    }
    this.offsets = offsets;
    this.M = M;
    const ids = new Int32Array(M);
    const pos = new Int32Array(M);
    rows.forEach((r, i) => r.ids.forEach((id, t) => ((ids[offsets[i] + t] = id), (pos[offsets[i] + t] = positionId(t, r.cache.past)))));
    const { Tensor } = native();
    this.ids = this.keep(Tensor.fromArray(ids, [M], 'i32', device));
    this.posIds = this.keep(Tensor.fromArray(pos, [M], 'i32', device));
  }

  /** A scratch f32 tensor freed when the step ends. */
  tmp(...shape: number[]): NativeTensor {
    return this.keep(native().Tensor.empty('f32', shape, this.device));
  }

  /** A scratch f32 tensor by name, the same one for every layer of the step (a block's buffers). */
  scratch(name: string, ...shape: number[]): NativeTensor {
    let t = this.named.get(name);
    if (!t) {
      t = this.tmp(...shape);
      this.named.set(name, t);
    } else if (t.shape.length !== shape.length || t.shape.some((n, i) => n !== shape[i])) {
      throw new Error(`RaggedBatch.scratch: '${name}' was [${t.shape.join(', ')}], asked for [${shape.join(', ')}]`);
    }
    return t;
  }

  /**
   * A linear's own temporary, freed as soon as that linear is done (not at the end of the step: a
   * prefill chunk's [rows, G·N] deltas in every layer would otherwise all be alive at once).
   */
  private transient(...shape: number[]): NativeTensor {
    return native().Tensor.empty('f32', shape, this.device);
  }

  /** Rows [start, start + len) of t, as a view freed when the step ends. */
  rowsOf(t: NativeTensor, start: number, len: number): NativeTensor {
    return this.keep(t.narrow(0, start, len));
  }

  /** Columns [at, at + n) of t, as a strided view freed when the step ends. */
  cols(t: NativeTensor, at: number, n: number): NativeTensor {
    return this.keep(t.narrow(1, at, n));
  }

  /**
   * y = x·Wᵀ + b over every row, plus each row's adapter on LoRA module `module` of layer `layer`:
   * one segmented LoRA call (S-LoRA / Punica) - the base product once over every row, each adapter
   * segment's scale·(x_s·Aᵀ)·Bᵀ inside it, each row bit-identical to generate()'s fused call. With
   * shareBase off, one fused product per segment (the base weights read once per adapter).
   */
  linear(layer: number, module: string, x: NativeTensor, w: NativeTensor, bias: NativeTensor | undefined, y: NativeTensor): void {
    const k = this.kernels;
    const mods = this.segments.map((s) => s.adapter?.layers[layer]?.[module]);
    if (mods.every((m) => !m)) return k.linear(x, w, bias, y);
    if (!this.o.shareBase) {
      this.segments.forEach((s, i) => {
        const m = mods[i];
        const xs = this.rowsOf(x, s.start, s.len);
        const ys = this.rowsOf(y, s.start, s.len);
        if (!m || !s.adapter) return k.linear(xs, w, bias, ys);
        using xa = this.transient(s.len, m.groups * s.adapter.r);
        k.linear(xs, w, bias, ys, { spec: s.adapter.spec(m) as LoraSpec, xa });
      });
      return;
    }
    const segments: LoraSegment[] = [];
    this.segments.forEach((s, i) => {
      const m = mods[i];
      if (m && s.adapter) segments.push({ start: s.start, len: s.len, spec: s.adapter.spec(m) as LoraSpec });
    });
    k.linearSegments(x, w, bias, y, segments);
  }

  /**
   * Layer `layer`'s attention for every request at once: q [M, H·D], k, v [M, Hkv·D] hold the
   * batch's new rows; each request's keys and values go into its own layer cache at its past and
   * its queries attend causally over that cache (grouped KV heads when Hkv < H), writing o [M, H·D].
   * One native call per layer (the ragged attention op), each request bit for bit its own call.
   */
  attend(layer: number, q: NativeTensor, k: NativeTensor, v: NativeTensor, H: number, D: number, o: NativeTensor): void {
    const lse = this.scratch('attnLse', H * this.M);
    const rows = this.rows.map((r, j) => {
      const kv = r.cache.layers[layer];
      return { start: this.offsets[j], len: r.ids.length, cache: { k: kv.k, v: kv.v, past: r.cache.past } };
    });
    this.kernels.attendRagged(q, k, v, rows, { H, D }, 1 / Math.sqrt(D), o, lse);
  }

  dispose(): void {
    for (const t of this.bufs.reverse()) t.dispose();
    this.bufs.length = 0;
  }

  private keep<T extends NativeTensor>(t: T): T {
    this.bufs.push(t);
    return t;
  }
}

/** KV caches of `capacity` positions for every layer, `width` keys (and values) per position. */
export function allocateRowCache(device: DeviceName, layers: number, width: number, capacity: number, maxPositions: number): RowKvCache {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > maxPositions) {
    throw new LoraError('E_SHAPE', `KV cache capacity must be 1..${maxPositions}, got ${capacity}`);
  }
  const { Tensor } = native();
  const kv: { k: NativeTensor; v: NativeTensor }[] = [];
  try {
    for (let i = 0; i < layers; i++) kv.push({ k: Tensor.empty('f32', [1, capacity, width], device), v: Tensor.empty('f32', [1, capacity, width], device) });
  } catch (e) {
    for (const l of kv) (l.k.dispose(), l.v.dispose());
    throw e;
  }
  return {
    capacity, past: 0, bytes: rowCacheBytes(layers, width, capacity), layers: kv,
    dispose: () => {
      for (const l of kv) (l.k.dispose(), l.v.dispose());
      kv.length = 0;
    },
  };
}

export function rowCacheBytes(layers: number, width: number, capacity: number): number {
  return layers * 2 * capacity * width * 4;
}

/**
 * The step, pausing after each layer (a caller may yield to its event loop at every pause). Returns
 * each row's last-token logits in the input's order (undefined where not wanted) and advances the
 * caches. The rows' caches and adapters must stay alive until the generator is done.
 */
export function* raggedForward(m: RaggedModel, input: readonly RaggedRow[], o: RaggedStepOptions): Generator<void, (Float32Array | undefined)[], void> {
  if (!input.length) return [];
  for (const r of input) {
    if (!r.ids.length) throw new LoraError('E_SHAPE', 'forward: a row brings no tokens');
    if (r.cache.layers.length !== m.numLayers) throw new LoraError('E_SHAPE', `forward: a row's cache has ${r.cache.layers.length} layers, the model ${m.numLayers}`);
    if (r.cache.past + r.ids.length > r.cache.capacity) throw new LoraError('E_SHAPE', `forward: ${r.cache.past} + ${r.ids.length} positions exceed the cache's ${r.cache.capacity}`);
    for (const id of r.ids) if (!Number.isInteger(id) || id < 0 || id >= m.vocabSize) throw new LoraError('E_SHAPE', `forward: token id ${id} is outside the vocabulary [0, ${m.vocabSize})`);
  }
  // Rows of one adapter side by side, so each adapter's linears are one product over its segment.
  const order = input.map((_, i) => i);
  const adapterIds = new Map<LoraAdapter | undefined, number>();
  for (const r of input) if (!adapterIds.has(r.adapter)) adapterIds.set(r.adapter, adapterIds.size);
  order.sort((a, b) => adapterIds.get(input[a].adapter)! - adapterIds.get(input[b].adapter)! || a - b);
  const b = new RaggedBatch(m.kernels, m.device.memory, order.map((i) => input[i]), m.positionId, o);
  try {
    const { rows, offsets, M } = b;
    // The residual stream in two buffers, alternating: layer i reads one and writes the other.
    let x = b.tmp(M, m.hiddenSize);
    let next = b.tmp(M, m.hiddenSize);
    m.block.embed(b, x);
    for (let i = 0; i < m.numLayers; i++) {
      m.block.layer(b, i, x, next);
      [x, next] = [next, x];
      yield;
    }
    for (const r of rows) r.cache.past += r.ids.length;
    // The last row of each row that wants logits, gathered (an exact copy: ×1) for one lm_head product.
    const wanted = rows.map((r, j) => (r.wantLogits ? j : -1)).filter((j) => j >= 0);
    const out: (Float32Array | undefined)[] = new Array(input.length).fill(undefined);
    if (!wanted.length) return out;
    const R = wanted.length;
    const last = b.tmp(R, m.hiddenSize);
    wanted.forEach((j, g) => m.kernels.scale(b.rowsOf(x, offsets[j] + rows[j].ids.length - 1, 1), 1, b.rowsOf(last, g, 1)));
    const h = m.final(last, b.tmp(R, m.headWidth), b.tmp(R), b.tmp(R));
    const logits = b.tmp(R, m.vocabSize);
    m.kernels.linear(h, m.lmHead, undefined, logits);
    const all = logits.toArray() as Float32Array;
    const V = m.vocabSize;
    wanted.forEach((j, g) => (out[order[j]] = all.slice(g * V, (g + 1) * V)));
    return out;
  } finally {
    b.dispose();
  }
}
