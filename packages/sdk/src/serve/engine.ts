// The decode engine the server's scheduler drives: one forward over a ragged batch of rows, each row a
// request with its own KV cache, its own position and its own adapter (or none). A row brings one
// token (decode) or a chunk of its prompt (chunked prefill), so one call can mix both.
//
// Built only on the model's public pieces (config, weights, kernels; LoraAdapter for each served
// adapter), in the order model/generate.ts runs them, so a row's math is generate()'s math: layer
// norms, attention and GEMM rows are row-independent, which the serve tests check token for token
// against generate(). Every linear is one base product over all rows of the batch; rows of different
// adapters then add their own low-rank part on their own row segment (S-LoRA / Punica) with two
// small products each. The model layer has no segmented LoRA op yet, so this costs an extra pass
// over each segment's rows and an unfused add (see serve/README.md for what a fused op would save).
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import { LoraError } from '../io/errors.js';
import type { LoraSpec } from '../model/kernels.js';
import { autocast } from '../model/bind-kernels.js';
import { LN_EPS } from '../model/layer.js';
import type { LoraAdapter, LoraModule } from '../model/lora.js';
import type { OptForCausalLM } from '../model/opt.js';

/** One request's keys and values for every layer: [1, capacity, C] f32 each. */
export interface KvCache {
  readonly capacity: number;
  /** Positions already written (the next token goes at `past`). */
  past: number;
  readonly bytes: number;
  dispose(): void;
}

export interface ForwardRow {
  cache: KvCache;
  /** The tokens this row adds at positions past .. past + ids.length - 1. */
  ids: readonly number[];
  adapter?: LoraAdapter;
  /** Whether the last token's logits are wanted (false for a prefill chunk that is not the last). */
  wantLogits: boolean;
}

/** What the scheduler needs from a model; an engine for another family implements the same. */
export interface DecodeEngine {
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosTokenId: number;
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

interface OptKvCache extends KvCache {
  layers: { k: NativeTensor; v: NativeTensor }[];
}

export interface EngineOptions {
  /**
   * Rows of different adapters share each base product (S-LoRA / Punica; default: on for f32/f16
   * bases, off under bf16 autocast). Off: one fused base+LoRA product per adapter segment,
   * bit-identical to generate() on every base format, reading the base weights once per adapter in
   * the batch.
   */
  shareBase?: boolean;
}

export class OptDecodeEngine implements DecodeEngine {
  private readonly shareBase: boolean;
  /** B_bd per LoRA module (made by prepare() or on first use; freed by forget() when its adapter is unloaded). */
  private readonly bdCache = new Map<LoraModule, NativeTensor>();

  constructor(private readonly model: OptForCausalLM, o: EngineOptions = {}) {
    const type = (model as { modelType?: string }).modelType ?? 'opt';
    if (type !== 'opt' || !model.weights.layers[0] || !('qkvW' in model.weights.layers[0])) {
      throw new LoraError('E_CONFIG', `lora serve's decode engine runs OPT's block; a '${type}' model needs its own DecodeEngine (serve/README.md)`);
    }
    // Under autocast (bf16 or quantized base) the fused kernel runs the LoRA branch in bf16, which the
    // composed shared-base path does not reproduce bit for bit (greedy tokens differed from generate()
    // on the pre-LN fixture), so there the default is one fused product per adapter segment.
    this.shareBase = o.shareBase ?? !autocast(model.weights.layers[0].qkvW);
  }

  /** Makes the adapter's B_bd blocks now rather than on its first mixed batch. */
  prepare(adapter: LoraAdapter): void {
    if (this.shareBase) for (const m of adapter.modules()) this.blockDiagonalB(m, adapter.r);
  }

  /** Frees what the engine derived from an adapter's weights (call before disposing the adapter). */
  forget(adapter: LoraAdapter): void {
    for (const m of adapter.modules()) {
      this.bdCache.get(m)?.dispose();
      this.bdCache.delete(m);
    }
  }

  dispose(): void {
    for (const t of this.bdCache.values()) t.dispose();
    this.bdCache.clear();
  }

  /** [G·N, G·r] with group g's B [N, r] at rows g·N, columns g·r (zeros elsewhere); B itself when G = 1. */
  private blockDiagonalB(m: LoraModule, r: number): NativeTensor {
    if (m.groups === 1) return m.b;
    let bd = this.bdCache.get(m);
    if (!bd) {
      const N = m.outFeatures;
      const G = m.groups;
      const b = m.b.toArray() as Float32Array;
      const out = new Float32Array(G * N * G * r);
      for (let g = 0; g < G; g++) for (let n = 0; n < N; n++) out.set(b.subarray((g * N + n) * r, (g * N + n + 1) * r), (g * N + n) * G * r + g * r);
      bd = native().Tensor.fromArray(out, [G * N, G * r], 'f32', m.b.device as DeviceName);
      this.bdCache.set(m, bd);
    }
    return bd;
  }

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }
  get maxPositions(): number {
    return this.model.config.maxPositionEmbeddings;
  }
  get eosTokenId(): number {
    return this.model.config.eosTokenId;
  }

  kvBytes(capacity: number): number {
    const c = this.model.config;
    return c.numHiddenLayers * 2 * capacity * c.hiddenSize * 4;
  }

  allocate(capacity: number): KvCache {
    const c = this.model.config;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > c.maxPositionEmbeddings) {
      throw new LoraError('E_SHAPE', `KV cache capacity must be 1..${c.maxPositionEmbeddings}, got ${capacity}`);
    }
    const { Tensor } = native();
    const dev = this.model.device.memory;
    const layers: OptKvCache['layers'] = [];
    try {
      for (let i = 0; i < c.numHiddenLayers; i++) {
        layers.push({ k: Tensor.empty('f32', [1, capacity, c.hiddenSize], dev), v: Tensor.empty('f32', [1, capacity, c.hiddenSize], dev) });
      }
    } catch (e) {
      for (const l of layers) (l.k.dispose(), l.v.dispose());
      throw e;
    }
    const cache: OptKvCache = {
      capacity, past: 0, bytes: this.kvBytes(capacity), layers,
      dispose: () => {
        for (const l of layers) (l.k.dispose(), l.v.dispose());
        layers.length = 0;
      },
    };
    return cache;
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
  *forwardSteps(input: readonly ForwardRow[]): Generator<void, (Float32Array | undefined)[], void> {
    if (!input.length) return [];
    const m = this.model;
    const c = m.config;
    for (const r of input) {
      if (!r.ids.length) throw new LoraError('E_SHAPE', 'forward: a row brings no tokens');
      if (r.cache.past + r.ids.length > r.cache.capacity) throw new LoraError('E_SHAPE', `forward: ${r.cache.past} + ${r.ids.length} positions exceed the cache's ${r.cache.capacity}`);
      for (const id of r.ids) if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new LoraError('E_SHAPE', `forward: token id ${id} is outside the vocabulary [0, ${c.vocabSize})`);
    }
    // Rows of one adapter side by side, so each adapter's linears are one product over its segment.
    const order = input.map((_, i) => i);
    const adapterIds = new Map<LoraAdapter | undefined, number>();
    for (const r of input) if (!adapterIds.has(r.adapter)) adapterIds.set(r.adapter, adapterIds.size);
    order.sort((a, b) => adapterIds.get(input[a].adapter)! - adapterIds.get(input[b].adapter)! || a - b);
    const rows = order.map((i) => input[i]);
    const offsets: number[] = [];
    let M = 0;
    for (const r of rows) (offsets.push(M), (M += r.ids.length));
    const segments: { start: number; len: number; adapter?: LoraAdapter }[] = [];
    rows.forEach((r, i) => {
      const last = segments.at(-1);
      if (last && last.adapter === r.adapter) last.len += r.ids.length;
      else segments.push({ start: offsets[i], len: r.ids.length, adapter: r.adapter });
    });

    const k = m.kernels;
    const w = m.weights;
    const { Tensor } = native();
    const dev = m.device.memory;
    const C = c.hiddenSize;
    const F = c.ffnDim;
    const E = c.wordEmbedProjDim;
    const H = c.numAttentionHeads;
    const bufs: NativeTensor[] = [];
    const keep = <T extends NativeTensor>(t: T): T => (bufs.push(t), t);
    const tmp = (...shape: number[]) => keep(Tensor.empty('f32', shape, dev));
    const rowsOf = (t: NativeTensor, start: number, len: number) => keep(t.narrow(0, start, len));
    try {
      const ids = new Int32Array(M);
      const pos = new Int32Array(M);
      rows.forEach((r, i) => r.ids.forEach((id, j) => ((ids[offsets[i] + j] = id), (pos[offsets[i] + j] = r.cache.past + j + 2))));
      const idT = keep(Tensor.fromArray(ids, [M], 'i32', dev));
      const posT = keep(Tensor.fromArray(pos, [M], 'i32', dev));
      let x = tmp(M, C);
      if (w.projIn) {
        const e = tmp(M, E);
        k.embedding(idT, w.embed, e);
        k.linear(e, w.projIn, undefined, x);
        const p = tmp(M, C);
        k.embedding(posT, w.pos, p);
        k.add(x, p, x);
      } else {
        k.embedding(idT, w.embed, x, { ids: posT, table: w.pos });
      }
      const ln = tmp(M, C);
      const mean = tmp(M);
      const rstd = tmp(M);
      const qkv = tmp(M, 3 * C);
      const att = tmp(M, C);
      const proj = tmp(M, C);
      const h1 = tmp(M, F);
      const sum = tmp(M, C);
      // A linear over the batch. One segment with an adapter: the fused LoRA kernel, exactly
      // generate()'s call. Several segments (S-LoRA / Punica): one base product over every row, then
      // each adapter's low-rank part on its own rows, y_s += scale·(x_s·Aᵀ)·B_bdᵀ, where B_bd holds
      // the G groups' B blocks on its diagonal, so the q/k/v groups land in their own columns.
      type Pick = (l: LoraAdapter['layers'][number]) => LoraModule | undefined;
      const linear = (layer: number, xIn: NativeTensor, wt: NativeTensor, bias: NativeTensor, y: NativeTensor, pick: Pick) => {
        const mods = segments.map((s) => (s.adapter ? pick(s.adapter.layers[layer]) : undefined));
        if (mods.every((mod) => !mod)) return k.linear(xIn, wt, bias, y);
        if (segments.length === 1 || !this.shareBase) {
          segments.forEach((s, i) => {
            const mod = mods[i];
            const xs = rowsOf(xIn, s.start, s.len);
            const ys = rowsOf(y, s.start, s.len);
            if (!mod || !s.adapter) k.linear(xs, wt, bias, ys);
            else k.linear(xs, wt, bias, ys, { spec: s.adapter.spec(mod) as LoraSpec, xa: tmp(s.len, mod.groups * s.adapter.r) });
          });
          return;
        }
        k.linear(xIn, wt, bias, y);
        segments.forEach((s, i) => {
          const mod = mods[i];
          if (!mod || !s.adapter) return;
          const xa = tmp(s.len, mod.groups * s.adapter.r);
          k.linear(rowsOf(xIn, s.start, s.len), mod.a, undefined, xa);
          const delta = tmp(s.len, mod.groups * mod.outFeatures);
          k.linear(xa, this.blockDiagonalB(mod, s.adapter.r), undefined, delta);
          const ys = rowsOf(y, s.start, s.len);
          k.add(ys, delta, ys, s.adapter.scale);
        });
      };
      const caches = rows.map((r) => r.cache as OptKvCache);
      for (let i = 0; i < c.numHiddenLayers; i++) {
        const l = w.layers[i];
        const pre = c.doLayerNormBefore;
        if (pre) k.layerNorm(x, l.ln1G, l.ln1B, LN_EPS, ln, mean, rstd);
        linear(i, pre ? ln : x, l.qkvW, l.qkvB, qkv, (ll) => ll?.qkv);
        rows.forEach((r, j) => {
          const n = r.ids.length;
          const kv = caches[j].layers[i];
          k.attentionDecode(rowsOf(qkv, offsets[j], n), kv.k, kv.v, r.cache.past, { B: 1, T: n, H, D: c.headDim }, 1 / Math.sqrt(c.headDim), rowsOf(att, offsets[j], n));
        });
        linear(i, att, l.outW, l.outB, proj, (ll) => ll?.out_proj);
        k.add(x, proj, sum);
        const mid = pre ? sum : ln;
        if (pre) k.layerNorm(sum, l.ln2G, l.ln2B, LN_EPS, ln, mean, rstd);
        else k.layerNorm(sum, l.ln1G, l.ln1B, LN_EPS, ln, mean, rstd);
        linear(i, ln, l.fc1W, l.fc1B, h1, (ll) => ll?.fc1);
        k.relu(h1, h1);
        linear(i, h1, l.fc2W, l.fc2B, proj, (ll) => ll?.fc2);
        const next = tmp(M, C);
        if (pre) {
          k.add(mid, proj, next);
        } else {
          k.add(mid, proj, sum);
          k.layerNorm(sum, l.ln2G, l.ln2B, LN_EPS, next, mean, rstd);
        }
        x = next;
        yield;
      }
      for (const r of rows) r.cache.past += r.ids.length;
      // The last row of each row that wants logits, gathered (an exact copy: ×1) for one lm_head product.
      const wanted = rows.map((r, j) => (r.wantLogits ? j : -1)).filter((j) => j >= 0);
      const out: (Float32Array | undefined)[] = new Array(input.length).fill(undefined);
      if (!wanted.length) return out;
      const R = wanted.length;
      const last = tmp(R, C);
      wanted.forEach((j, g) => k.scale(rowsOf(x, offsets[j] + rows[j].ids.length - 1, 1), 1, rowsOf(last, g, 1)));
      let h: NativeTensor = last;
      if (w.finalLnG || (c.doLayerNormBefore && !c.removeFinalLayerNorm)) {
        h = tmp(R, C);
        k.layerNorm(last, w.finalLnG, w.finalLnB, LN_EPS, h, tmp(R), tmp(R));
      } else if (w.projOut) {
        h = tmp(R, E);
        k.linear(last, w.projOut, undefined, h);
      }
      const logits = tmp(R, c.vocabSize);
      k.linear(h, w.lmHead, undefined, logits);
      const all = logits.toArray() as Float32Array;
      const V = c.vocabSize;
      wanted.forEach((j, g) => (out[order[j]] = all.slice(g * V, (g + 1) * V)));
      return out;
    } finally {
      for (const t of bufs.reverse()) t.dispose();
    }
  }
}
