// Data-parallel training over a communicator (llm.c / PyTorch DDP style): every rank holds the
// frozen base and the same adapter, builds the same shuffled global batches and trains on its slice
// of rows; the LoRA grads are summed across ranks before clipping and AdamW, so every rank applies
// the same update and keeps the same weights.
import { Communicator, type NativeTensor } from '@lora/core-native';

import type { Batch } from '../data/batches.js';
import { LoraError } from '../io/errors.js';

/** What the Trainer needs from a communicator; @lora/core-native's Communicator (Open MPI) is one. */
export interface DistributedComm {
  readonly rank: number;
  readonly size: number;
  /** In-place sum over ranks, the same bits on every rank. */
  allreduceSum(buf: NativeTensor[] | Float32Array | Float64Array): Promise<void>;
  /** Root's bytes into every rank's buffer of the same length. */
  broadcast(bytes: Uint8Array, root?: number): Promise<void>;
}

const IGNORE_INDEX = -100;

/**
 * Rows [rank·b, (rank+1)·b) of a global batch of size·b rows, keeping its padded width (so the
 * rows see exactly the padding they would in one process). Token counts are the slice's own.
 */
export function shardBatch(global: Batch, rank: number, size: number): Batch {
  if (global.batch % size !== 0) throw new LoraError('E_CONFIG', `a global batch of ${global.batch} rows does not split over ${size} ranks`);
  const b = global.batch / size;
  const { seq } = global;
  // Copies (slice, not subarray): the rows go to native code as their own buffers.
  const rows = (a: Int32Array) => a.slice(rank * b * seq, (rank + 1) * b * seq);
  const inputIds = rows(global.inputIds);
  const attentionMask = rows(global.attentionMask);
  const labels = rows(global.labels);
  let tokens = 0;
  for (const m of attentionMask) tokens += m;
  let lossTokens = 0;
  for (let r = 0; r < b; r++) for (let t = 1; t < seq; t++) if (labels[r * seq + t] !== IGNORE_INDEX) lossTokens++;
  return { batch: b, seq, inputIds, attentionMask, labels, tokens, lossTokens };
}

const encoder = new TextEncoder();

/**
 * Refuses (E_DIST) to start when any rank's settings differ from rank 0's — model identity, data
 * hash, seed, LoRA and optimizer settings, resume point. Rank 0's settings are broadcast; each rank
 * compares them with its own, and a sum over ranks of per-rank flags tells every rank who differs,
 * so every rank stops with the same decision (and the differing rank names what differs).
 */
export async function assertSameRunOnEveryRank(comm: DistributedComm, settings: Record<string, unknown>): Promise<void> {
  const mine = encoder.encode(JSON.stringify(settings));
  const len = new Uint8Array(new Float64Array([mine.byteLength]).buffer);
  await comm.broadcast(len, 0);
  const rootLen = new Float64Array(len.buffer)[0];
  const root = new Uint8Array(rootLen);
  if (comm.rank === 0) root.set(mine);
  await comm.broadcast(root, 0);
  const rootSettings = JSON.parse(new TextDecoder().decode(root)) as Record<string, unknown>;
  const diffs = Object.keys({ ...rootSettings, ...settings })
    .filter((k) => JSON.stringify(rootSettings[k]) !== JSON.stringify(settings[k]))
    .map((k) => `${k}: ${show(rootSettings[k])} on rank 0, ${show(settings[k])} here`);
  const flags = new Float64Array(comm.size);
  flags[comm.rank] = diffs.length ? 1 : 0;
  await comm.allreduceSum(flags);
  const differing = [...flags.keys()].filter((r) => flags[r] !== 0);
  if (!differing.length) return;
  const here = diffs.length ? ` (rank ${comm.rank}: ${diffs.join('; ')})` : '';
  throw new LoraError('E_DIST', `ranks ${differing.join(', ')} of ${comm.size} were started with settings that differ from rank 0's${here}; every rank must get the same model, data, seed and LoRA/optimizer settings`);
}

function show(v: unknown): string {
  return typeof v === 'string' && v.length === 64 ? `${v.slice(0, 12)}…` : (JSON.stringify(v) ?? 'unset');
}

/**
 * The communicator of a process that mpirun (or another PMI launcher) started as one of several
 * ranks; undefined in a plain single process. Launched with several ranks where MPI is not usable
 * is an error (ERR_LORA_DIST) rather than N processes each training alone.
 */
export function connectDistributed(o: { timeoutS?: number } = {}): Promise<Communicator | undefined> {
  return Communicator.fromEnvironment(o);
}
