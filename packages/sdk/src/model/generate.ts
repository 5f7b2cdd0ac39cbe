// KV-cached decoding for one sequence: the prompt runs through every layer once (prefill), writing
// each layer's keys and values into a cache; then each new token costs one row through the layers
// and one attention pass over the cache - the model's own blocks with a query offset (the family
// opens the DecodeTarget). Greedy, temperature and nucleus (top-p) sampling.
import { seededRandom } from '../data/split.js';
import { LoraError } from '../io/errors.js';
import type { CausalLM, GenerateOptions, GenerateResult } from '../models/causal-lm.js';

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
export async function decode(prompt: readonly number[], o: GenerateOptions, open: (capacity: number) => DecodeTarget, limits: { vocabSize: number; maxPositions: number; eosTokenIds: readonly number[] }): Promise<GenerateResult> {
  const { vocabSize, maxPositions } = limits;
  if (!prompt.length) throw new LoraError('E_SHAPE', 'generate: the prompt is empty (prompts start with the bos token)');
  for (const id of prompt) if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new LoraError('E_SHAPE', `generate: prompt id ${id} is outside the vocabulary [0, ${vocabSize})`);
  const maxNew = o.maxNewTokens ?? 64;
  if (prompt.length > maxPositions) throw new LoraError('E_SHAPE', `generate: prompt of ${prompt.length} tokens exceeds the model's ${maxPositions} positions`);
  o.signal?.throwIfAborted();
  const capacity = Math.min(maxPositions, prompt.length + maxNew);
  const stop = new Set(o.stopTokens ?? limits.eosTokenIds);
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

/** The model's own generate(): KV-cached decoding through its blocks. */
export function generate(model: Pick<CausalLM, 'generate'>, prompt: readonly number[], o: GenerateOptions = {}): Promise<GenerateResult> {
  return model.generate(prompt, o);
}
