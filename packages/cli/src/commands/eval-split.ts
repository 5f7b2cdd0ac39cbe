// Which records `lora eval --adapter DIR` may score: the adapter's run records its data, split and
// seed in training_args.json (written by `lora train` next to the adapter, or in the run folder
// above a checkpoint). From it the evaluation defaults to the true held-out complement, and any
// requested record that the adapter was trained on is found, so an eval never silently scores
// training data.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { splitTrainTest, type InstructionRecord } from '@lora/sdk';

/** What eval needs from a training run's training_args.json. */
export interface TrainingRecord {
  /** The training_args.json it came from. */
  file: string;
  dataPath?: string;
  dataSha256?: string;
  split?: number;
  seed?: number;
}

/** An error the user can act on, with a stable code (printed without a stack trace). */
export class EvalSplitError extends Error {
  constructor(
    readonly code: 'E_EVAL_TRAIN_OVERLAP' | 'E_EVAL_NO_HELD_OUT' | 'E_EVAL_TRAINING_ARGS',
    message: string,
  ) {
    super(message);
    this.name = 'EvalSplitError';
  }
}

/** training_args.json in the adapter folder, or up to two folders above (OUT/checkpoints/checkpoint-N). */
export function findTrainingRecord(adapterDir: string): TrainingRecord | undefined {
  let dir = resolve(adapterDir);
  for (let up = 0; up < 3; up++, dir = dirname(dir)) {
    const file = join(dir, 'training_args.json');
    if (!existsSync(file)) continue;
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new EvalSplitError('E_EVAL_TRAINING_ARGS', `${file}: not valid JSON (${(e as Error).message})`);
    }
    const data = (typeof json.data === 'object' && json.data !== null ? json.data : {}) as Record<string, unknown>;
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
    const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
    // A relative data path was relative to where training ran; the run folder's parent is the best guess left.
    const path = str(data.path) ?? str(json.data);
    return {
      file,
      dataPath: path,
      dataSha256: str(data.sha256),
      split: num(json.split),
      seed: num(json.seed),
    };
  }
  return undefined;
}

/** sha256 of a local file's bytes, or undefined for a hub id or missing file. */
export function fileSha256(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return undefined;
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return undefined;
  }
}

const recordKey = (r: InstructionRecord) => JSON.stringify([r.instruction, r.input ?? '', r.output]);

export interface OverlapCheck {
  /** Held-out records the adapter was trained on. */
  overlap: number;
  /** How the training records were identified, for the log and summary.json. */
  method: 'same-data-indices' | 'training-data-content' | 'unverified';
  note?: string;
}

/**
 * Counts the records about to be scored that the run trained on. With the very data it trained on
 * (same sha256), by position in the seeded split; with other data, by content against the
 * training records re-read from the recorded path; with neither at hand, unverified.
 */
export async function checkOverlap(
  t: TrainingRecord,
  evalData: { path: string; sha256?: string; records: readonly InstructionRecord[] },
  heldIndices: readonly number[],
  readTraining: (path: string) => Promise<readonly InstructionRecord[]>,
): Promise<OverlapCheck> {
  if (t.split === undefined || t.seed === undefined) {
    return { overlap: 0, method: 'unverified', note: `${t.file} does not record the split and seed` };
  }
  const sameData = t.dataSha256 !== undefined ? evalData.sha256 === t.dataSha256 : t.dataPath !== undefined && resolve(t.dataPath) === resolve(evalData.path);
  if (sameData) {
    const indices = evalData.records.map((_, i) => i);
    const trained = new Set(splitTrainTest(indices, t.split, t.seed).train);
    return { overlap: heldIndices.filter((i) => trained.has(i)).length, method: 'same-data-indices' };
  }
  if (t.dataPath && existsSync(t.dataPath)) {
    const sha = fileSha256(t.dataPath);
    if (t.dataSha256 && sha !== t.dataSha256) {
      return { overlap: 0, method: 'unverified', note: `${t.dataPath} changed since training (sha256 differs from ${t.file})` };
    }
    const train = splitTrainTest(await readTraining(t.dataPath), t.split, t.seed).train;
    const keys = new Set(train.map(recordKey));
    return { overlap: heldIndices.filter((i) => keys.has(recordKey(evalData.records[i]))).length, method: 'training-data-content' };
  }
  return { overlap: 0, method: 'unverified', note: `the training data ${t.dataPath ?? '(not recorded)'} is not at hand to compare with` };
}
