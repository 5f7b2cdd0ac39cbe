// What a resumed run must share with the checkpoint to replay the same trajectory: every setting
// that changes the numbers (activation checkpointing does not: it recomputes the same values), a
// hash of the tokenized examples (another data file, --seq, --response-only, another tokenizer),
// and the base model's identity (a hash of its config and every weight byte, not its path).
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

import type { Example } from '../data/batches.js';
import { LoraError } from '../io/errors.js';

/** sha256 of the examples' token ids and labels, in order. */
export function examplesHash(examples: readonly Example[]): string {
  const h = createHash('sha256');
  for (const e of examples) {
    h.update(Int32Array.from(e.inputIds));
    h.update('|');
    h.update(Int32Array.from(e.labels));
    h.update(';');
  }
  return h.digest('hex');
}

interface BytesLike {
  bytes(): Uint8Array;
}

function isTensor(v: unknown): v is BytesLike {
  return typeof v === 'object' && v !== null && typeof (v as BytesLike).bytes === 'function';
}

/**
 * The base model's identity: sha256 over its config and, for every tensor reachable from its
 * weights (walked in key order, one in host memory at a time), its path, byte length and CRC-32.
 * CRC-32 (zlib's, 2.6 GB/s here) instead of sha256 (465 MB/s here) over the bytes: this tells
 * models apart, it does not defend against forgery, and opt-350m's 1.3 GB take ~0.5 s instead of
 * ~2.8 s. It yields between tensors, so the event loop never waits for more than one tensor.
 */
export async function modelIdentity(config: unknown, weights: unknown): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify(config));
  const seen = new Set<unknown>();
  const tensors: [string, BytesLike][] = [];
  const walk = (v: unknown, path: string): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (isTensor(v)) {
      tensors.push([path, v]);
      return;
    }
    const entries = Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]] as const);
    for (const [k, x] of entries) walk(x, `${path}.${k}`);
  };
  walk(weights, 'w');
  for (const [path, t] of tensors) {
    const bytes = t.bytes();
    h.update(`${path}:${bytes.byteLength}:${crc32(bytes)};`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return h.digest('hex');
}

/** Human names for the settings, used in the refusal message. */
const NAMES: Record<string, string> = {
  model: 'base model (its weights or config)', dtype: 'base dtype', r: 'LoRA rank', alpha: 'LoRA alpha', dropout: 'LoRA dropout',
  targets: 'target modules', rslora: 'rsLoRA', examples: 'the tokenized training examples (data file, split, seq, response-only or tokenizer)',
  batchSize: 'batch size', gradAccum: 'gradient accumulation', seq: 'seq', padding: 'padding', packing: 'packing', lr: 'learning rate',
  schedule: 'lr schedule', warmupSteps: 'warmup steps', weightDecay: 'weight decay', beta1: 'Adam beta1', beta2: 'Adam beta2', eps: 'Adam eps',
  maxGradNorm: 'max grad norm (clipping)', seed: 'seed', maxSteps: 'total steps', worldSize: 'number of ranks (mpirun -np)',
};

/** Refuses (E_RESUME) when any setting differs, naming each with both values. */
export function assertSameSettings(checkpoint: string, saved: Record<string, unknown>, now: Record<string, unknown>): void {
  const keys = [...new Set([...Object.keys(saved), ...Object.keys(now)])];
  const diffs = keys
    .filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(now[k]))
    .map((k) => {
      const show = (v: unknown) => (typeof v === 'string' && v.length === 64 ? `${v.slice(0, 12)}…` : JSON.stringify(v) ?? 'unset');
      return `${NAMES[k] ?? k}: ${show(saved[k])} in the checkpoint, ${show(now[k])} now`;
    });
  if (diffs.length) {
    throw new LoraError('E_RESUME', `${checkpoint}: cannot resume, settings that change the run differ — ${diffs.join('; ')}. Resume with the checkpoint's settings, or start a new run in another folder`);
  }
}
