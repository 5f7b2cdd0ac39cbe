// Records → token examples → fixed-shape batches for causal-LM training. Labels follow transformers'
// convention: labels = input ids (the model shifts them), −100 where no loss is wanted (padding and,
// with `responseOnly`, the prompt).
import { alpacaPrompt } from './template.js';
import type { InstructionRecord } from './records.js';
import { shuffled } from './split.js';

export const IGNORE_INDEX = -100;

/** What the pipeline needs from a tokenizer (OptTokenizer satisfies it). */
export interface TokenizerLike {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  readonly eosTokenId: number;
  readonly padTokenId: number;
}

export interface Example {
  inputIds: number[];
  labels: number[];
}

export interface ExampleOptions {
  /** Truncate each example to this many tokens. */
  maxLength: number;
  /** Loss only on the response tokens (the prompt's labels are −100). Default false, like the seed run. */
  responseOnly?: boolean;
}

/** prompt (with bos) + output + eos, truncated to maxLength. */
export function tokenizeRecord(tok: TokenizerLike, r: InstructionRecord, o: ExampleOptions): Example {
  const prompt = tok.encode(alpacaPrompt(r), { addSpecialTokens: true });
  const response = [...tok.encode(r.output, { addSpecialTokens: false }), tok.eosTokenId];
  const ids = [...prompt, ...response].slice(0, o.maxLength);
  const labels = ids.map((id, i) => (o.responseOnly && i < prompt.length ? IGNORE_INDEX : id));
  return { inputIds: ids, labels };
}

export interface Batch {
  batch: number;
  seq: number;
  /** [batch, seq] row-major. */
  inputIds: Int32Array;
  /** 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  labels: Int32Array;
  /** Tokens whose next-token prediction counts in the loss (labels[t+1] != −100). */
  lossTokens: number;
  /** Non-padding tokens. */
  tokens: number;
}

export interface BatchOptions {
  batchSize: number;
  /** Sequence length: the padded/packed width of every batch. */
  seq: number;
  /** 'longest' pads each batch to its longest example (HF's default collator); 'max_length' to seq. */
  padding?: 'longest' | 'max_length';
  /** Concatenate examples (eos-separated already) into full rows of seq tokens instead of padding. */
  packing?: boolean;
  /** Shuffle examples with this seed before batching (per epoch: seed + epoch). */
  seed?: number;
  epoch?: number;
  padId: number;
  /** Keep a last, smaller batch (default false: every batch has batchSize rows). */
  keepLast?: boolean;
}

function countLossTokens(labels: Int32Array, batch: number, seq: number): number {
  let n = 0;
  for (let b = 0; b < batch; b++) for (let t = 1; t < seq; t++) if (labels[b * seq + t] !== IGNORE_INDEX) n++;
  return n;
}

function makeBatch(rows: Example[], seq: number, padId: number): Batch {
  const B = rows.length;
  const inputIds = new Int32Array(B * seq).fill(padId);
  const attentionMask = new Int32Array(B * seq);
  const labels = new Int32Array(B * seq).fill(IGNORE_INDEX);
  let tokens = 0;
  rows.forEach((ex, b) => {
    const n = Math.min(ex.inputIds.length, seq);
    for (let t = 0; t < n; t++) {
      inputIds[b * seq + t] = ex.inputIds[t];
      attentionMask[b * seq + t] = 1;
      labels[b * seq + t] = ex.labels[t];
    }
    tokens += n;
  });
  return { batch: B, seq, inputIds, attentionMask, labels, tokens, lossTokens: countLossTokens(labels, B, seq) };
}

/** Concatenates examples into rows of exactly `seq` tokens (the tail that does not fill a row is dropped). */
function pack(examples: Example[], seq: number): Example[] {
  const rows: Example[] = [];
  let ids: number[] = [];
  let labels: number[] = [];
  for (const ex of examples) {
    ids.push(...ex.inputIds);
    labels.push(...ex.labels);
    while (ids.length >= seq) {
      rows.push({ inputIds: ids.slice(0, seq), labels: labels.slice(0, seq) });
      ids = ids.slice(seq);
      labels = labels.slice(seq);
    }
  }
  return rows;
}

/** Splits examples into batches; deterministic for a given seed and epoch. */
export function makeBatches(examples: readonly Example[], o: BatchOptions): Batch[] {
  if (!(Number.isInteger(o.batchSize) && o.batchSize > 0)) throw new RangeError(`batchSize must be a positive integer, got ${o.batchSize}`);
  if (!(Number.isInteger(o.seq) && o.seq > 1)) throw new RangeError(`seq must be an integer > 1, got ${o.seq}`);
  const order = o.seed === undefined ? examples.slice() : shuffled(examples, o.seed + (o.epoch ?? 0) * 7919);
  const rows = o.packing ? pack(order, o.seq) : order;
  const out: Batch[] = [];
  for (let i = 0; i < rows.length; i += o.batchSize) {
    const chunk = rows.slice(i, i + o.batchSize);
    if (chunk.length < o.batchSize && !o.keepLast) break;
    const width = o.packing || o.padding === 'max_length' ? o.seq : Math.min(o.seq, Math.max(2, ...chunk.map((e) => e.inputIds.length)));
    out.push(makeBatch(chunk, width, o.padId));
  }
  return out;
}
