// Training checkpoints: DIR/checkpoint-<step>/ with the adapter (PEFT format), the AdamW moments
// and trainer_state.json. Written into a temporary folder and renamed into place, so a run killed
// mid-write never leaves a half checkpoint that resume would trust.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { LoraError } from '../io/errors.js';
import { SafetensorsFile } from '../io/safetensors-reader.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import type { RawTensor } from '../io/tensor.js';
import { saveAdapter } from '../model/adapter-io.js';
import type { LoraAdapter } from '../model/lora.js';

export const TRAINER_STATE = 'trainer_state.json';
export const OPTIMIZER_STATE = 'optimizer.safetensors';

export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  seed: number;
  lossHistory: number[];
  /** Identifies the run's settings; resume refuses a checkpoint made with different ones. */
  fingerprint: string;
}

export async function writeCheckpoint(
  dir: string,
  lora: LoraAdapter,
  optimizer: Map<string, RawTensor>,
  state: TrainerState,
  baseModel: string | null,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const final = join(dir, `checkpoint-${state.step}`);
  const tmp = join(dir, `.tmp-checkpoint-${state.step}-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await saveAdapter(lora, tmp, baseModel);
  await writeSafetensors(join(tmp, OPTIMIZER_STATE), optimizer, { format: 'pt' });
  await writeFile(join(tmp, TRAINER_STATE), `${JSON.stringify(state, null, 2)}\n`);
  await rm(final, { recursive: true, force: true });
  await rename(tmp, final);
  return final;
}

/** The newest complete checkpoint folder in dir, or undefined. */
export async function latestCheckpoint(dir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return undefined;
  }
  const steps = names.map((n) => /^checkpoint-(\d+)$/.exec(n)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1]));
  if (!steps.length) return undefined;
  return join(dir, `checkpoint-${Math.max(...steps)}`);
}

export async function readTrainerState(checkpoint: string): Promise<TrainerState> {
  const path = join(checkpoint, TRAINER_STATE);
  let s: TrainerState;
  try {
    s = JSON.parse(await readFile(path, 'utf8')) as TrainerState;
  } catch (e) {
    throw new LoraError('E_CONFIG', `${path}: cannot read the trainer state: ${(e as Error).message}`);
  }
  if (!Number.isInteger(s.step) || s.step < 0 || !Array.isArray(s.lossHistory) || typeof s.fingerprint !== 'string') {
    throw new LoraError('E_CONFIG', `${path}: not a lora trainer state`);
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
