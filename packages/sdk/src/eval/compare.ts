/**
 * Experiments for `lora eval compare`: each `lora eval` output (a folder holding summary.json, or the
 * file) is one experiment; each run of a `lora bench` results.json (or its folder) with eval metrics
 * is one experiment (e.g. the three ranks of a sweep). The comparison table is one row per
 * experiment and one column per metric, with the best value per column marked.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

import { BENCH_SCHEMA, type BenchResults } from '../bench/results.js';
import { jsonSyntaxError } from '../io/safe-file.js';
import { EvalError } from './errors.js';
import { EVAL_SCHEMA, type EvalSummary } from './evaluate.js';

export interface Experiment {
  name: string;
  /** The file it came from. */
  source: string;
  kind: 'eval' | 'bench';
  /** Examples evaluated, when known. */
  count?: number;
  metrics: Record<string, number>;
  /** A lora eval run's judge (absent: the run had none), so a table can tell "no judge" from "judge failed". */
  judge?: { model: string; judged: number; errors: number; unreachable?: string };
}

export interface CompareColumn {
  key: string;
  header: string;
  /** Which direction is better; null: not ranked. */
  best: 'min' | 'max' | null;
  decimals: number;
}

export interface CompareTable {
  columns: CompareColumn[];
  rows: Array<{ experiment: Experiment; cells: Array<{ value: number | null; text: string; best: boolean }> }>;
  /** Things worth telling the reader (e.g. a bench run without eval metrics). */
  notes: string[];
}

const KNOWN: Record<string, Omit<CompareColumn, 'key'>> = {
  count: { header: 'n', best: null, decimals: 0 },
  bleu: { header: 'BLEU', best: 'max', decimals: 2 },
  rouge1: { header: 'ROUGE-1', best: 'max', decimals: 4 },
  rouge2: { header: 'ROUGE-2', best: 'max', decimals: 4 },
  rougeL: { header: 'ROUGE-L', best: 'max', decimals: 4 },
  rougeLsum: { header: 'ROUGE-Lsum', best: 'max', decimals: 4 },
  meteor: { header: 'METEOR', best: 'max', decimals: 4 },
  judge_correctness: { header: 'judge correct', best: 'max', decimals: 3 },
  judge_helpfulness: { header: 'judge helpful', best: 'max', decimals: 3 },
  ttft_p50_ms: { header: 'TTFT P50 ms', best: 'min', decimals: 1 },
  ttft_p95_ms: { header: 'TTFT P95 ms', best: 'min', decimals: 1 },
  latency_p50_ms: { header: 'latency P50 ms', best: 'min', decimals: 1 },
  latency_p95_ms: { header: 'latency P95 ms', best: 'min', decimals: 1 },
  tokens_in: { header: 'tokens in', best: null, decimals: 0 },
  tokens_out: { header: 'tokens out', best: null, decimals: 0 },
  errors: { header: 'errors', best: 'min', decimals: 0 },
  final_loss: { header: 'final loss', best: 'min', decimals: 4 },
};
const ORDER = Object.keys(KNOWN);
const LOWER_IS_BETTER = /loss|perplexity|ppl|latency|time|_ms$|error|wer|cer/i;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function finite(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** The flat metrics of one `lora eval` summary. */
export function experimentFromSummary(s: EvalSummary, source: string): Experiment {
  const m: Record<string, number> = {};
  for (const [k, v] of Object.entries(s.metrics ?? {})) if (finite(v)) m[k] = v;
  const lat = s.latency;
  if (finite(lat?.timeToFirstTokenMs?.p50)) m.ttft_p50_ms = lat.timeToFirstTokenMs.p50;
  if (finite(lat?.timeToFirstTokenMs?.p95)) m.ttft_p95_ms = lat.timeToFirstTokenMs.p95;
  if (finite(lat?.totalMs?.p50)) m.latency_p50_ms = lat.totalMs.p50;
  if (finite(lat?.totalMs?.p95)) m.latency_p95_ms = lat.totalMs.p95;
  if (finite(s.tokens?.in)) m.tokens_in = s.tokens.in;
  if (finite(s.tokens?.out)) m.tokens_out = s.tokens.out;
  if (finite(s.errors)) m.errors = s.errors;
  const dir = basename(dirname(resolve(source)));
  const name = typeof s.name === 'string' && s.name && s.name !== 'lora-eval' ? s.name : dir;
  const j = isObject(s.judge) ? s.judge : undefined;
  const judge = j && typeof j.model === 'string'
    ? { model: j.model, judged: finite(j.judged) ? j.judged : 0, errors: finite(j.errors) ? j.errors : 0, ...(typeof j.unreachable === 'string' ? { unreachable: j.unreachable } : {}) }
    : undefined;
  return { name, source, kind: 'eval', ...(finite(s.count) ? { count: s.count } : {}), metrics: m, ...(judge ? { judge } : {}) };
}

/** One experiment per run of a bench results.json; runs without eval metrics are noted. */
export function experimentsFromBench(b: BenchResults, source: string, notes: string[]): Experiment[] {
  const prefix = basename(dirname(resolve(source)));
  const runs = Array.isArray(b.runs) ? b.runs : [];
  if (!runs.length) notes.push(`${source}: no runs`);
  return runs.map((r, i) => {
    const m: Record<string, number> = {};
    for (const [k, v] of Object.entries(r.eval ?? {})) if (finite(v)) m[k] = v;
    if (!r.eval) notes.push(`${source}: run ${r.label ?? i + 1} has no eval metrics (run lora bench with --eval N)`);
    if (finite(r.finalLoss)) m.final_loss = r.finalLoss;
    return { name: `${prefix}/${r.label ?? `run ${i + 1}`}`, source, kind: 'bench' as const, metrics: m };
  });
}

/** Loads experiments from eval output folders, summary.json files, bench folders and results.json files. */
export async function loadExperiments(paths: readonly string[]): Promise<{ experiments: Experiment[]; notes: string[] }> {
  const experiments: Experiment[] = [];
  const notes: string[] = [];
  for (const p of paths) {
    let file = p;
    if (!existsSync(p)) throw new EvalError('E_EVAL_INPUT', `${p}: no such file or folder`);
    if (statSync(p).isDirectory()) {
      if (existsSync(join(p, 'summary.json'))) file = join(p, 'summary.json');
      else if (existsSync(join(p, 'results.json'))) file = join(p, 'results.json');
      else throw new EvalError('E_EVAL_INPUT', `${p}: holds neither summary.json (lora eval --out) nor results.json (lora bench --out)`);
    }
    let data: unknown;
    try {
      data = JSON.parse(await readFile(file, 'utf8'));
    } catch (e) {
      throw new EvalError('E_EVAL_INPUT', `${file}: not valid JSON (${jsonSyntaxError(e)})`);
    }
    if (!isObject(data)) throw new EvalError('E_EVAL_INPUT', `${file}: expected a JSON object`);
    if (data.schema === EVAL_SCHEMA) experiments.push(experimentFromSummary(data as unknown as EvalSummary, file));
    else if (data.schema === BENCH_SCHEMA) experiments.push(...experimentsFromBench(data as unknown as BenchResults, file, notes));
    else throw new EvalError('E_EVAL_INPUT', `${file}: schema ${JSON.stringify(data.schema ?? null)} is neither ${EVAL_SCHEMA} (lora eval) nor ${BENCH_SCHEMA} (lora bench)`);
  }
  // Same name twice (e.g. two folders both called "out"): add the path so that rows can be told apart.
  const seen = new Map<string, number>();
  for (const e of experiments) seen.set(e.name, (seen.get(e.name) ?? 0) + 1);
  for (const e of experiments) if ((seen.get(e.name) ?? 0) > 1) e.name = `${e.name} (${e.source})`;
  return { experiments, notes };
}

function fmt(v: number, decimals: number): string {
  return v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** The table: columns are every metric any experiment has (known ones first, in a fixed order). */
export function compareTable(experiments: readonly Experiment[], notes: string[] = []): CompareTable {
  const keys = new Set<string>();
  for (const e of experiments) {
    if (e.count !== undefined) keys.add('count');
    for (const k of Object.keys(e.metrics)) keys.add(k);
  }
  const sorted = [...keys].sort((a, b) => {
    const ia = ORDER.indexOf(a);
    const ib = ORDER.indexOf(b);
    return (ia < 0 ? ORDER.length : ia) - (ib < 0 ? ORDER.length : ib) || a.localeCompare(b);
  });
  const columns: CompareColumn[] = sorted.map((key) => ({ key, ...(KNOWN[key] ?? { header: key, best: LOWER_IS_BETTER.test(key) ? 'min' : 'max', decimals: 4 }) }));
  const value = (e: Experiment, key: string): number | null => {
    const v = key === 'count' ? e.count : e.metrics[key];
    return finite(v) ? v : null;
  };
  const bestOf = columns.map((c) => {
    if (!c.best) return null;
    const vals = experiments.map((e) => value(e, c.key)).filter((v): v is number => v !== null);
    if (vals.length < 2) return null;
    const b = c.best === 'min' ? Math.min(...vals) : Math.max(...vals);
    return vals.every((v) => v === b) ? null : b;
  });
  const rows = experiments.map((experiment) => ({
    experiment,
    cells: columns.map((c, i) => {
      const v = value(experiment, c.key);
      return { value: v, text: v === null ? 'n/a' : fmt(v, c.decimals), best: v !== null && bestOf[i] !== null && v === bestOf[i] };
    }),
  }));
  return { columns, rows, notes };
}
