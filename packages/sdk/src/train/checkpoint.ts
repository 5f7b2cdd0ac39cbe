// Training checkpoints: DIR/checkpoint-<step>/ with the adapter (PEFT format), the AdamW moments
// and trainer_state.json (Hugging Face's TrainerState schema, plus a `lora_trainer` section with
// what an exact resume needs and a sha256 of every other file in the folder).
//
// A checkpoint is written only when every LoRA value and every AdamW moment is finite, into a
// temporary folder whose files and folder are fsynced before it is renamed into place (and the
// parent fsynced after), so a checkpoint that exists is complete and good. On load, every file is
// checked against its recorded sha256; a corrupt newest checkpoint falls back to the previous one.
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { writeFileAtomic } from '../io/atomic-write.js';
import { LoraError } from '../io/errors.js';
import { SafetensorsFile } from '../io/safetensors-reader.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import type { RawTensor } from '../io/tensor.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, peftConfig } from '../model/adapter-io.js';
import type { LoraAdapter } from '../model/lora.js';
import type { HfTrainerState } from './hf-state.js';

export const TRAINER_STATE = 'trainer_state.json';
export const OPTIMIZER_STATE = 'optimizer.safetensors';

/** What this trainer adds to HF's trainer_state.json to resume bit-exactly. */
export interface LoraTrainerSection {
  seed: number;
  /** The loss of every step so far (the resumed run continues the same curve). */
  loss_history: number[];
  /** Every setting that changes the trajectory; resume compares them one by one. */
  settings: Record<string, unknown>;
  /** sha256 of each file of the checkpoint but trainer_state.json. */
  files: Record<string, string>;
}

export type TrainerState = HfTrainerState & { lora_trainer: LoraTrainerSection };

/** Counts the non-finite values of each tensor; returns the offenders' names with their counts. */
export function nonFinite(tensors: Map<string, RawTensor>): { name: string; count: number; total: number }[] {
  const bad: { name: string; count: number; total: number }[] = [];
  for (const [name, t] of tensors) {
    const d = t.data as Float32Array;
    let count = 0;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) count++;
    if (count) bad.push({ name, count, total: d.length });
  }
  return bad;
}

async function fsyncPath(path: string): Promise<void> {
  const h = await open(path, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** True when `pid` names a live process (EPERM: alive but another user's). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes `.tmp-checkpoint-<step>-<pid>` folders left by runs that died (their pid is gone). */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    const m = /^\.tmp-checkpoint-\d+-(\d+)$/.exec(n);
    if (!m || (Number(m[1]) !== process.pid && pidAlive(Number(m[1])))) continue;
    await rm(join(dir, n), { recursive: true, force: true });
    removed.push(n);
  }
  return removed;
}

/**
 * Writes DIR/checkpoint-<step>. Throws E_CHECKPOINT (and writes nothing) when a LoRA value or a
 * moment is not finite: such a checkpoint would be "the last good one" and is not.
 */
export async function writeCheckpoint(
  dir: string,
  lora: LoraAdapter,
  adapter: Map<string, RawTensor>,
  optimizer: Map<string, RawTensor>,
  state: TrainerState,
  baseModel: string | null,
): Promise<string> {
  const bad = nonFinite(new Map([...adapter, ...optimizer]));
  if (bad.length) {
    const n = bad.reduce((a, b) => a + b.count, 0);
    throw new LoraError('E_CHECKPOINT', `checkpoint-${state.global_step}: ${n} values are not finite (${bad.slice(0, 3).map((b) => `${b.name}: ${b.count} of ${b.total}`).join(', ')}${bad.length > 3 ? ', …' : ''}); not written`);
  }
  const final = join(dir, `checkpoint-${state.global_step}`);
  const tmp = join(dir, `.tmp-checkpoint-${state.global_step}-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writeSafetensors(join(tmp, ADAPTER_WEIGHTS), adapter, { format: 'pt' });
  await writeFileAtomic(join(tmp, ADAPTER_CONFIG), [new TextEncoder().encode(`${JSON.stringify(peftConfig(lora, baseModel), null, 2)}\n`)]);
  await writeSafetensors(join(tmp, OPTIMIZER_STATE), optimizer, { format: 'pt' });
  const files: Record<string, string> = {};
  for (const f of [ADAPTER_WEIGHTS, ADAPTER_CONFIG, OPTIMIZER_STATE]) files[f] = await sha256File(join(tmp, f));
  const full: TrainerState = { ...state, lora_trainer: { ...state.lora_trainer, files } };
  await writeFileAtomic(join(tmp, TRAINER_STATE), [new TextEncoder().encode(`${JSON.stringify(full, null, 2)}\n`)]);
  await fsyncPath(tmp);
  await rm(final, { recursive: true, force: true });
  await rename(tmp, final);
  await fsyncPath(dir);
  return final;
}

/** Complete checkpoint folders in dir, newest first. */
export async function listCheckpoints(dir: string): Promise<{ step: number; path: string }[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  return names
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ step: Number(m[1]), path: join(dir, m[0]) }))
    .sort((a, b) => b.step - a.step);
}

/** The newest checkpoint folder in dir (not verified), or undefined. */
export async function latestCheckpoint(dir: string): Promise<string | undefined> {
  return (await listCheckpoints(dir))[0]?.path;
}

/** Reads trainer_state.json and checks every file's sha256; E_CHECKPOINT when anything is off. */
export async function readVerifiedState(checkpoint: string): Promise<TrainerState> {
  const path = join(checkpoint, TRAINER_STATE);
  let s: TrainerState;
  try {
    s = JSON.parse(await readFile(path, 'utf8')) as TrainerState;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new LoraError('E_FILE_NOT_FOUND', `${path}: no such file (is ${checkpoint} a checkpoint folder?)`);
    throw new LoraError('E_CHECKPOINT', `${path}: cannot read the trainer state: ${err.message}`);
  }
  const l = s?.lora_trainer;
  if (!Number.isInteger(s.global_step) || s.global_step < 0 || !l || !Array.isArray(l.loss_history) || typeof l.settings !== 'object' || typeof l.files !== 'object') {
    throw new LoraError('E_CHECKPOINT', `${path}: not a lora trainer state (made by an older version, or damaged)`);
  }
  for (const f of [ADAPTER_WEIGHTS, ADAPTER_CONFIG, OPTIMIZER_STATE]) {
    const want = l.files[f];
    let got: string;
    try {
      got = await sha256File(join(checkpoint, f));
    } catch {
      throw new LoraError('E_CHECKPOINT', `${join(checkpoint, f)}: missing`);
    }
    if (got !== want) throw new LoraError('E_CHECKPOINT', `${join(checkpoint, f)}: checksum mismatch (sha256 ${got.slice(0, 12)}…, recorded ${String(want).slice(0, 12)}…): the file is damaged`);
  }
  return s;
}

export async function readOptimizerState(checkpoint: string): Promise<Map<string, RawTensor>> {
  const f = await SafetensorsFile.open(join(checkpoint, OPTIMIZER_STATE));
  try {
    const out = new Map<string, RawTensor>();
    for (const k of f.keys()) out.set(k, await f.read(k));
    return out;
  } finally {
    await f.close();
  }
}

/**
 * Keeps the newest `limit` checkpoints and `keep` (the best one), deleting the rest, oldest first
 * (HF's save_total_limit, which also never deletes the best model's checkpoint).
 */
export async function pruneCheckpoints(dir: string, limit: number, keep: string | undefined): Promise<string[]> {
  const all = await listCheckpoints(dir);
  const removed: string[] = [];
  for (const c of all.slice(limit)) {
    if (c.path === keep) continue;
    await rm(c.path, { recursive: true, force: true });
    removed.push(c.path);
  }
  return removed;
}
