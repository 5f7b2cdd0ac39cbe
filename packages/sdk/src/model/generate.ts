// KV-cached decoding for one sequence: the prompt runs through every layer once (prefill), writing
// each layer's keys and values into a cache; then each new token costs one row through the layers
// and one attention pass over the cache. Greedy, temperature and nucleus (top-p) sampling.
import { native, type NativeTensor } from '@lora/core-native';

import { seededRandom } from '../data/split.js';
import { LoraError } from '../io/errors.js';
import type { OptConfig } from '../config/opt-config.js';
import type { GenerateOptions, GenerateResult } from '../models/causal-lm.js';
import type { ResolvedDevice } from './device.js';
import type { Kernels, LoraSpec } from './kernels.js';
import { LN_EPS } from './layer.js';
import type { LoraAdapter } from './lora.js';
import type { ModelWeights } from './weights.js';

export type { GenerateOptions, GenerateResult } from '../models/causal-lm.js';

/** Picks the next token from logits. Exported for tests. */
export function sampleToken(logits: Float32Array, o: { temperature: number; topP: number; topK: number }, rand: () => number): number {
  if (o.temperature <= 0) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  const idx = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
  const k = Math.min(o.topK > 0 ? o.topK : idx.length, idx.length);
  const top = idx.slice(0, k);
  const max = logits[top[0]];
  const probs = top.map((i) => Math.exp((logits[i] - max) / o.temperature));
  const total = probs.reduce((a, b) => a + b, 0);
  let keep = top.length;
  if (o.topP < 1) {
    let run = 0;
    for (let j = 0; j < top.length; j++) {
      run += probs[j] / total;
      if (run >= o.topP) {
        keep = j + 1;
        break;
      }
    }
  }
  const mass = probs.slice(0, keep).reduce((a, b) => a + b, 0);
  let u = rand() * mass;
  for (let j = 0; j < keep; j++) {
    u -= probs[j];
    if (u <= 0) return top[j];
  }
  return top[keep - 1];
}

/** A model's decoder over its own KV cache (opened for `capacity` positions), whatever its family. */
export interface DecodeTarget {
  /**
   * Runs `ids` (positions past .. past+n-1) through the model over its KV cache and returns the
   * last row's logits; the caches are released by `close`.
   */
  run(ids: number[], past: number): Float32Array;
  close(): void;
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

/**
 * The decoding loop: prefill, then one token per step, sampling from each step's logits. It yields
 * to the event loop after every step (so a caller's timers and I/O wait at most one decode step),
 * stops when `signal` aborts (rejecting with its reason), and refuses non-finite logits with
 * E_NON_FINITE rather than sampling garbage from them.
 */
export async function decode(prompt: readonly number[], o: GenerateOptions, open: (capacity: number) => DecodeTarget, limits: { vocabSize: number; maxPositions: number; eosTokenId: number }): Promise<GenerateResult> {
  const { vocabSize, maxPositions } = limits;
  if (!prompt.length) throw new LoraError('E_SHAPE', 'generate: the prompt is empty (prompts start with the bos token)');
  for (const id of prompt) if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new LoraError('E_SHAPE', `generate: prompt id ${id} is outside the vocabulary [0, ${vocabSize})`);
  const maxNew = o.maxNewTokens ?? 64;
  if (prompt.length > maxPositions) throw new LoraError('E_SHAPE', `generate: prompt of ${prompt.length} tokens exceeds the model's ${maxPositions} positions`);
  o.signal?.throwIfAborted();
  const capacity = Math.min(maxPositions, prompt.length + maxNew);
  const stop = new Set(o.stopTokens ?? [limits.eosTokenId]);
  const sampling = { temperature: o.temperature ?? 0, topP: o.topP ?? 1, topK: o.topK ?? 0 };
  const rand = seededRandom(o.seed ?? 0);
  const t0 = performance.now();
  let ttft = 0;
  const tokens: number[] = [];
  let stoppedBy: GenerateResult['stoppedBy'] = 'max-new-tokens';
  const target = open(capacity);
  const step = (ids: number[], past: number) => {
    const logits = target.run(ids, past);
    for (let i = 0; i < logits.length; i++) {
      if (!Number.isFinite(logits[i])) {
        throw new LoraError('E_NON_FINITE', `generate: the logits at position ${past + ids.length - 1} hold ${logits[i]} (token ${i}); the model or adapter produced non-finite values`);
      }
    }
    return logits;
  };
  try {
    let logits = step([...prompt], 0);
    let past = prompt.length;
    for (;;) {
      const id = sampleToken(logits, sampling, rand);
      if (!tokens.length) ttft = performance.now() - t0;
      tokens.push(id);
      if (o.onToken?.(id) === false) {
        stoppedBy = 'callback';
        break;
      }
      if (stop.has(id)) {
        stoppedBy = 'stop-token';
        break;
      }
      if (tokens.length >= maxNew) break;
      if (past >= capacity) {
        stoppedBy = 'max-positions';
        break;
      }
      await yieldToLoop();
      o.signal?.throwIfAborted();
      logits = step([id], past);
      past += 1;
    }
  } finally {
    target.close();
  }
  return { tokens, stoppedBy, timeToFirstTokenMs: ttft, totalMs: performance.now() - t0 };
}

/** The parts of an OPT model its decoder reads. */
export interface OptDecodeParts {
  config: OptConfig;
  weights: ModelWeights;
  kernels: Kernels;
  lora: LoraAdapter | undefined;
  device: ResolvedDevice;
}

export function generate(model: OptDecodeParts, prompt: readonly number[], o: GenerateOptions = {}): Promise<GenerateResult> {
  const c = model.config;
  return decode(prompt, o, (capacity) => optDecoder(model, capacity), { vocabSize: c.vocabSize, maxPositions: c.maxPositionEmbeddings, eosTokenId: c.eosTokenId });
}

function optDecoder(model: OptDecodeParts, capacity: number): DecodeTarget {
  const c = model.config;
  const k = model.kernels;
  const w = model.weights;
  const lora = model.lora;
  const { Tensor } = native();
  const dev = model.device.memory;
  const C = c.hiddenSize;
  const F = c.ffnDim;
  const E = c.wordEmbedProjDim;
  const H = c.numAttentionHeads;
  const owned: NativeTensor[] = [];
  const f32 = (...shape: number[]) => {
    const t = Tensor.empty('f32', shape, dev);
    owned.push(t);
    return t;
  };
  const caches = Array.from({ length: c.numHiddenLayers }, () => ({ k: f32(1, capacity, C), v: f32(1, capacity, C) }));
  // Runs `ids` (positions past .. past+n-1) through the model; returns the last row's logits.
  const run = (ids: number[], past: number): Float32Array => {
    const n = ids.length;
    const bufs: NativeTensor[] = [];
    const tmp = (...shape: number[]) => {
      const t = Tensor.empty('f32', shape, dev);
      bufs.push(t);
      return t;
    };
    try {
      const idT = Tensor.fromArray(Int32Array.from(ids), [n], 'i32', dev);
      bufs.push(idT);
      const posT = Tensor.fromArray(Int32Array.from(ids, (_, i) => past + i + 2), [n], 'i32', dev);
      bufs.push(posT);
      let x = tmp(n, C);
      if (w.projIn) {
        const e = tmp(n, E);
        k.embedding(idT, w.embed, e);
        k.linear(e, w.projIn, undefined, x);
        const p = tmp(n, C);
        k.embedding(posT, w.pos, p);
        k.add(x, p, x);
      } else {
        k.embedding(idT, w.embed, x, { ids: posT, table: w.pos });
      }
      const ln = tmp(n, C);
      const mean = tmp(n);
      const rstd = tmp(n);
      const qkv = tmp(n, 3 * C);
      const att = tmp(n, C);
      const proj = tmp(n, C);
      const h1 = tmp(n, F);
      const sum = tmp(n, C);
      const xa = (m: { groups: number } | undefined) => (m && lora ? tmp(n, m.groups * lora.r) : undefined);
      const linear = (xIn: NativeTensor, wt: NativeTensor, bias: NativeTensor, y: NativeTensor, m: Parameters<NonNullable<typeof lora>['spec']>[0] | undefined) => {
        const cache = xa(m);
        k.linear(xIn, wt, bias, y, m && lora && cache ? { spec: lora.spec(m) as LoraSpec, xa: cache } : undefined);
      };
      for (let i = 0; i < c.numHiddenLayers; i++) {
        const l = w.layers[i];
        const ll = lora?.layers[i];
        const pre = c.doLayerNormBefore;
        if (pre) k.layerNorm(x, l.ln1G, l.ln1B, LN_EPS, ln, mean, rstd);
        linear(pre ? ln : x, l.qkvW, l.qkvB, qkv, ll?.qkv);
        k.attentionDecode(qkv, caches[i].k, caches[i].v, past, { B: 1, T: n, H, D: c.headDim }, 1 / Math.sqrt(c.headDim), att);
        linear(att, l.outW, l.outB, proj, ll?.out_proj);
        k.add(x, proj, sum);
        const mid = pre ? sum : ln;
        if (pre) k.layerNorm(sum, l.ln2G, l.ln2B, LN_EPS, ln, mean, rstd);
        else k.layerNorm(sum, l.ln1G, l.ln1B, LN_EPS, ln, mean, rstd);
        linear(ln, l.fc1W, l.fc1B, h1, ll?.fc1);
        k.relu(h1, h1);
        linear(h1, l.fc2W, l.fc2B, proj, ll?.fc2);
        const next = tmp(n, C);
        if (pre) {
          k.add(mid, proj, next);
        } else {
          k.add(mid, proj, sum);
          k.layerNorm(sum, l.ln2G, l.ln2B, LN_EPS, next, mean, rstd);
        }
        x = next;
      }
      // Only the last row's logits are needed.
      const last = x.narrow(0, n - 1, 1);
      bufs.push(last);
      let h: NativeTensor = last;
      if (w.finalLnG || (c.doLayerNormBefore && !c.removeFinalLayerNorm)) {
        h = tmp(1, C);
        k.layerNorm(last, w.finalLnG, w.finalLnB, LN_EPS, h, tmp(1), tmp(1));
      } else if (w.projOut) {
        h = tmp(1, E);
        k.linear(last, w.projOut, undefined, h);
      }
      const logits = tmp(1, c.vocabSize);
      k.linear(h, w.lmHead, undefined, logits);
      return logits.toArray() as Float32Array;
    } finally {
      for (const t of bufs) t.dispose();
    }
  };
  return {
    run,
    close: () => {
      for (const t of owned) t.dispose();
    },
  };
}
