// What `lora eval compare` needs beyond the SDK's eval/bench experiments: `lora train --out`
// folders as rows (train_results.json's final metrics, trainer_log.jsonl's loss curve), each row's
// config (data, split, seed, n) as columns, and a warning when rows were not measured alike.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import type { Experiment } from '@lora/sdk';

/** The settings that decide whether two rows can be compared at all. */
export interface RunConfig {
  data?: string;
  /** sha256 of the data file when recorded (tells two copies of one file apart from two files). */
  dataSha256?: string;
  split?: number;
  seed?: number;
  /** Examples evaluated (eval), or training records (train). */
  n?: number;
}

export interface TrainRun {
  experiment: Experiment;
  config: RunConfig;
  /** Per-step training loss, and eval loss where logged. */
  curve: { step: number; loss: number }[];
  evalCurve: { step: number; loss: number }[];
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const text = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

function readJson(file: string): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A `lora train --out` folder: holds train_results.json or trainer_log.jsonl (and no eval/bench output). */
export function isTrainFolder(path: string): boolean {
  if (!existsSync(path) || !statSync(path).isDirectory()) return false;
  if (existsSync(join(path, 'summary.json')) || existsSync(join(path, 'results.json'))) return false;
  return existsSync(join(path, 'train_results.json')) || existsSync(join(path, 'trainer_log.jsonl'));
}

/** One row from a train folder; a malformed log line is skipped and counted in notes. */
export function loadTrainRun(dir: string, notes: string[]): TrainRun {
  const results = readJson(join(dir, 'train_results.json')) ?? {};
  const evalResults = readJson(join(dir, 'eval_results.json')) ?? {};
  const args = readJson(join(dir, 'training_args.json')) ?? {};
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries({ ...results, ...evalResults })) if (finite(v) && k !== 'epoch') metrics[k] = v;
  const curve: TrainRun['curve'] = [];
  const evalCurve: TrainRun['evalCurve'] = [];
  const log = join(dir, 'trainer_log.jsonl');
  if (existsSync(log)) {
    let bad = 0;
    for (const line of readFileSync(log, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (finite(e.step) && finite(e.loss)) curve.push({ step: e.step, loss: e.loss });
        if (finite(e.step) && finite(e.eval_loss)) evalCurve.push({ step: e.step, loss: e.eval_loss });
      } catch {
        bad++;
      }
    }
    if (bad) notes.push(`${log}: ${bad} line${bad === 1 ? '' : 's'} that are not JSON were skipped`);
  }
  if (!Object.keys(metrics).length && curve.length) metrics.last_logged_loss = curve[curve.length - 1].loss;
  if (!existsSync(join(dir, 'train_results.json'))) notes.push(`${dir}: no train_results.json (an unfinished run?); its curve is shown as far as it was logged`);
  const data = (typeof args.data === 'object' && args.data !== null ? args.data : {}) as Record<string, unknown>;
  const config: RunConfig = {
    data: text(data.path), dataSha256: text(data.sha256), split: finite(args.split) ? args.split : undefined, seed: finite(args.seed) ? args.seed : undefined,
    n: finite(data.records) && finite(args.split) ? Math.round(data.records * args.split) : undefined,
  };
  const experiment = { name: basename(resolve(dir)), source: join(dir, existsSync(join(dir, 'train_results.json')) ? 'train_results.json' : 'trainer_log.jsonl'), kind: 'train', metrics } as unknown as Experiment;
  return { experiment, config, curve, evalCurve };
}

/** The config of an eval (summary.json) or bench (results.json) experiment, read from its file. */
export function configOfExperiment(e: Experiment): RunConfig {
  const json = readJson(e.source);
  const c = (json?.config ?? {}) as Record<string, unknown>;
  return {
    data: text(c.data), split: finite(c.split) ? c.split : undefined, seed: finite(c.seed) ? c.seed : undefined,
    n: e.count ?? (finite(c.heldOut) ? c.heldOut : undefined),
  };
}

const same = (vals: Array<string | number | undefined>) => new Set(vals.filter((v) => v !== undefined).map(String)).size <= 1;

/** Warnings when rows differ in what they were measured on; each names the differing values. */
export function configWarnings(rows: Array<{ name: string; kind: string; config: RunConfig }>): string[] {
  const out: string[] = [];
  const list = (pick: (c: RunConfig) => string | number | undefined) =>
    rows.filter((r) => pick(r.config) !== undefined).map((r) => `${r.name}: ${pick(r.config)}`).join(', ');
  const dataKey = (c: RunConfig) => c.dataSha256 ?? (c.data === undefined ? undefined : resolve(c.data));
  if (!same(rows.map((r) => dataKey(r.config)))) out.push(`the rows were measured on different data (${list((c) => c.data)}); their metrics are not comparable`);
  if (!same(rows.map((r) => r.config.split))) out.push(`the rows use different splits (${list((c) => c.split)}): different records were held out`);
  if (!same(rows.map((r) => r.config.seed))) out.push(`the rows use different split seeds (${list((c) => c.seed)}): different records were held out`);
  // n only compares like with like: examples evaluated across eval rows, records trained across train rows.
  for (const kind of ['eval', 'train']) {
    const of = rows.filter((r) => r.kind === kind);
    if (!same(of.map((r) => r.config.n))) out.push(`the ${kind} rows cover different numbers of ${kind === 'eval' ? 'examples' : 'training records'} (${list((c) => (of.some((r) => r.config === c) ? c.n : undefined))})`);
  }
  return out;
}

/** Config cells as table text: the data file's name, split, seed. */
export function configCells(c: RunConfig): string[] {
  return [c.data === undefined ? 'n/a' : basename(c.data), c.split === undefined ? 'n/a' : String(c.split), c.seed === undefined ? 'n/a' : String(c.seed)];
}
export const CONFIG_HEADERS = ['data', 'split', 'seed'];
