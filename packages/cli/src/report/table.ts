// The summary table of a bench run, as one column model shared by the terminal/Markdown table
// (formatSummaryTable) and the HTML report. Each column says which direction is better, and the
// best value per column is marked when at least two runs have a finite value there.
import type { BenchResults, RunResult } from '@lora/sdk';

import { finalLossNoise, ownRangeThresholds, stepsToLoss, thresholdLabel, withinNoise } from './loss-stats.js';
import { isFiniteNumber, num } from './svg.js';

export const MiB = 1024 * 1024;

export interface Column {
  key: string;
  header: string;
  /** Longer explanation (HTML title attribute and the legend under the table). */
  title: string;
  align: 'left' | 'right';
  /** Which direction is better; null: not ranked. */
  best: 'min' | 'max' | null;
  /** The number ranked for "best" (null/NaN: not ranked). */
  value: (r: RunResult) => number | null;
  text: (r: RunResult) => string;
}

export interface TableCell {
  text: string;
  best: boolean;
}

export interface SummaryTable {
  columns: Column[];
  rows: TableCell[][];
}

/** Fixed decimals with thousands separators; non-finite values print as "n/a". */
export function fmt(v: unknown, decimals: number): string {
  const n = num(v);
  if (Number.isNaN(n)) return 'n/a';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  return n.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

function fmtAuto(v: unknown): string {
  const n = num(v);
  if (!Number.isFinite(n)) return fmt(n, 0);
  const a = Math.abs(n);
  if (a !== 0 && a < 1e-3) return n.toExponential(2);
  return fmt(n, a >= 100 ? 1 : a >= 1 ? 3 : 4);
}

function rate(v: unknown): string {
  const n = num(v);
  return fmt(n, Math.abs(n) >= 100 ? 0 : 1);
}

function numeric(key: string, header: string, title: string, best: Column['best'], get: (r: RunResult) => unknown, text: (v: unknown) => string): Column {
  return {
    key,
    header,
    title,
    align: 'right',
    best,
    value: (r) => {
      const v = num(get(r));
      return Number.isFinite(v) ? v : null;
    },
    text: (r) => text(get(r)),
  };
}

/**
 * The "steps to loss X" thresholds, highest first (the order a falling loss reaches them): taken from
 * the runs' own logged curves when there are any, else the ones recorded in results.json.
 */
export function thresholdKeys(results: BenchResults): string[] {
  const own = ownRangeThresholds(results);
  if (own.length) return own.map(thresholdLabel);
  const keys = new Set<string>();
  for (const r of results.runs ?? []) for (const k of Object.keys(r.stepsToLoss ?? {})) keys.add(k);
  return [...keys].sort((a, b) => num(b) - num(a) || a.localeCompare(b));
}

/** Steps to a threshold: from the run's curve when thresholds come from the curves, else as recorded. */
function stepsTo(results: BenchResults, r: RunResult, key: string): number | null | undefined {
  if (ownRangeThresholds(results).length) return stepsToLoss(r, Number(key));
  return r.stepsToLoss?.[key];
}

/** Readable names of the eval metrics a bench run records (benchEvalMetrics), and which are counts. */
const EVAL_NAMES: Record<string, string> = {
  bleu: 'eval BLEU', rouge1: 'eval ROUGE-1 F', rouge2: 'eval ROUGE-2 F', rougeL: 'eval ROUGE-L F', rougeLsum: 'eval ROUGE-Lsum F',
  meteor: 'eval METEOR', ttft_p50_ms: 'eval time to first token P50 ms', latency_p50_ms: 'eval generation latency P50 ms',
  errors: 'eval failed generations', count: 'eval examples', tokens_in: 'eval tokens in', tokens_out: 'eval tokens out',
};
const EVAL_COUNTS = /^(errors|count|tokens_in|tokens_out)$/;

/** Eval metrics where lower is better; every other metric ranks higher-is-better. */
const LOWER_IS_BETTER = /loss|perplexity|ppl|latency|time|_ms$|ms_|error|wer|cer/i;

export function summaryColumns(results: BenchResults): Column[] {
  const runs = results.runs ?? [];
  const cols: Column[] = [
    { key: 'run', header: 'run', title: 'run label', align: 'left', best: null, value: () => null, text: (r) => String(r.label ?? '') },
    numeric('rank', 'rank', 'LoRA rank r', null, (r) => r.rank, (v) => fmt(v, 0)),
    numeric('alpha', 'alpha', 'lora_alpha (scale = alpha / r)', null, (r) => r.alpha, (v) => trimmed(v)),
  ];
  const dtypes = new Set(runs.map((r) => r.baseDtype));
  if (results.sweep === 'quant' || dtypes.size > 1) {
    cols.push({ key: 'base', header: 'base', title: 'base weight format', align: 'left', best: null, value: () => null, text: (r) => String(r.baseDtype ?? '') });
  }
  cols.push(
    {
      key: 'trainable',
      header: 'trainable params',
      title: 'trainable (LoRA) parameters and their share of all parameters, as PEFT prints them',
      align: 'right',
      best: null,
      value: (r) => (isFiniteNumber(r.trainableParams) ? r.trainableParams : null),
      text: (r) => `${fmt(r.trainableParams, 0)} (${fmtPct(r.trainablePercent)}%)`,
    },
    numeric('runtime', 'runtime s', 'wall-clock training time in seconds', 'min', (r) => r.runtimeSec, (v) => fmt(v, 1)),
    numeric('finalLoss', 'final loss', 'train loss at the last step (one noisy step: compare with the loss noise sd)', 'min', (r) => r.finalLoss, (v) => fmt(v, 4)),
    numeric('finalNoise', 'loss noise sd', 'standard deviation of the per-step loss over the last steps: final losses closer than this are not told apart', null, (r) => finalLossNoise(r), (v) => fmt(v, 4)),
    numeric('tokensPerSec', 'tokens/s', 'training tokens (non-padding) per second', 'max', (r) => r.tokensPerSec, rate),
    numeric('mfu', 'MFU %', 'achieved model FLOP/s as % of the peak measured in the same run', 'max', (r) => r.mfuPercent, (v) => fmt(v, Math.abs(num(v)) < 10 ? 2 : 1)),
  );
  for (const k of thresholdKeys(results)) {
    cols.push({
      key: `steps<=${k}`,
      header: `steps to ${k}`,
      title: `first step whose logging-round mean loss is <= ${k} ("never": not reached)`,
      align: 'right',
      best: 'min',
      value: (r) => {
        const v = stepsTo(results, r, k);
        return isFiniteNumber(v) ? v : null;
      },
      text: (r) => {
        const v = stepsTo(results, r, k);
        return v === null || v === undefined ? 'never' : fmt(v, 0);
      },
    });
  }
  cols.push(
    numeric('rssMean', 'RSS mean MB', 'process resident memory, mean over the run (MB = 2^20 bytes)', 'min', (r) => mb(r.memory?.rssBytes?.mean), (v) => fmt(v, 1)),
    numeric('rssStd', 'RSS std MB', 'process resident memory, standard deviation', 'min', (r) => mb(r.memory?.rssBytes?.std), (v) => fmt(v, 1)),
    numeric('rssMin', 'RSS min MB', 'process resident memory, minimum', 'min', (r) => mb(r.memory?.rssBytes?.min), (v) => fmt(v, 1)),
    numeric('rssMax', 'RSS max MB', 'process resident memory, maximum', 'min', (r) => mb(r.memory?.rssBytes?.max), (v) => fmt(v, 1)),
    numeric('devPctMean', 'dev alloc % mean', 'device memory allocated as % of the device total (CPU: of system RAM), mean', 'min', (r) => r.memory?.deviceAllocatedPctMean, (v) => fmt(v, 1)),
    numeric('devPctPeak', 'dev alloc % peak', 'device memory allocated as % of the device total (CPU: of system RAM), peak', 'min', (r) => r.memory?.deviceAllocatedPctPeak, (v) => fmt(v, 1)),
  );
  if (runs.some((r) => r.memory?.gpuUtilPctMean !== undefined)) {
    cols.push(numeric('gpuUtil', 'GPU util %', 'NVML: % of time the GPU was busy, mean', 'max', (r) => r.memory?.gpuUtilPctMean, (v) => fmt(v, 1)));
  }
  if (runs.some((r) => r.memory?.gpuMemAccessPctMean !== undefined)) {
    cols.push(numeric('gpuMemAccess', 'GPU mem access %', 'NVML: % of time the GPU spent accessing memory, mean (not ranked)', null, (r) => r.memory?.gpuMemAccessPctMean, (v) => fmt(v, 1)));
  }
  const evalKeys = new Set<string>();
  for (const r of runs) for (const k of Object.keys(r.eval ?? {})) evalKeys.add(k);
  for (const k of [...evalKeys].sort()) {
    const best = LOWER_IS_BETTER.test(k) ? 'min' : 'max';
    const count = EVAL_COUNTS.test(k);
    const name = EVAL_NAMES[k] ?? `eval ${k}`;
    cols.push(numeric(`eval:${k}`, name, `held-out ${name.replace(/^eval /, '')} (${count && k !== 'errors' ? 'a count, not ranked' : `${best === 'min' ? 'lower' : 'higher'} is better`})`,
      count && k !== 'errors' ? null : best, (r) => r.eval?.[k], (v) => (count ? fmt(v, 0) : r0(v))));
  }
  if (runs.some((r) => r.quant)) {
    cols.push(
      numeric('quantBytes', 'base MB', 'bytes of the (quantized) base weights, MB = 2^20 bytes', 'min', (r) => mb(r.quant?.baseBytes), (v) => fmt(v, 1)),
      numeric('quantNmse', 'recon NMSE', 'normalised mean squared error of the reconstructed base weights', 'min', (r) => r.quant?.reconstructionNmse, fmtAuto),
      numeric('quantMaxAbs', 'recon max abs', 'largest absolute error of a reconstructed base weight', 'min', (r) => r.quant?.reconstructionMaxAbs, fmtAuto),
    );
  }
  return cols;
}

function r0(v: unknown): string {
  return fmtAuto(v);
}

function trimmed(v: unknown): string {
  const n = num(v);
  if (!Number.isFinite(n)) return fmt(n, 0);
  return Number.isInteger(n) ? fmt(n, 0) : String(Number(n.toPrecision(6)));
}

function fmtPct(v: unknown): string {
  const n = num(v);
  if (!Number.isFinite(n)) return fmt(n, 0);
  return fmt(n, Math.abs(n) < 0.1 ? 4 : 2);
}

function mb(v: unknown): number {
  const n = num(v);
  return Number.isFinite(n) ? n / MiB : Number.NaN;
}

/** The table: cells with their text and whether they hold the best value of their column. */
export function summaryTable(results: BenchResults): SummaryTable {
  const runs = results.runs ?? [];
  const columns = summaryColumns(results);
  const bestOf = columns.map((c) => {
    if (!c.best) return null;
    const vals = runs.map((r) => c.value(r)).filter((v): v is number => v !== null && Number.isFinite(v));
    if (vals.length < 2) return null;
    const b = c.best === 'min' ? Math.min(...vals) : Math.max(...vals);
    // A tie for best singles nothing out; nor does a final loss whose runner-up is within the noise.
    if (vals.filter((v) => v === b).length > 1) return null;
    if (c.key === 'finalLoss' && withinNoise(results, b, vals)) return null;
    return b;
  });
  const rows = runs.map((r) =>
    columns.map((c, i) => {
      const v = c.value(r);
      return { text: c.text(r), best: bestOf[i] !== null && v !== null && v === bestOf[i] };
    }),
  );
  return { columns, rows };
}

export interface FormatTableOptions {
  /**
   * Wrap to this many characters (e.g. process.stdout.columns): the columns are split over several
   * stacked tables, each starting with the run column. Default: one table, however wide.
   */
  maxWidth?: number;
}

/**
 * The summary table as Markdown (readable as plain text: columns are padded and numbers line up),
 * with the best value in each ranked column marked `*`, followed by a one-line legend.
 */
export function formatSummaryTable(results: BenchResults, options: FormatTableOptions = {}): string {
  const { columns, rows } = summaryTable(results);
  const marked = columns.map((_, i) => rows.some((row) => row[i].best));
  // A mark after the best value; a space after the others so that the digits stay aligned.
  const cells = rows.map((row) => row.map((c, i) => (c.best ? `${c.text}*` : marked[i] && columns[i].align === 'right' ? `${c.text} ` : c.text)));
  const widths = columns.map((c, i) => Math.max(c.header.length, 3, ...cells.map((row) => row[i].length)));
  const pad = (s: string, i: number) => (columns[i].align === 'right' ? s.padStart(widths[i]) : s.padEnd(widths[i]));
  const groups: number[][] = [];
  const max = options.maxWidth && options.maxWidth > 0 ? options.maxWidth : Infinity;
  let cur: number[] = [0];
  let width = 4 + widths[0];
  for (let i = 1; i < columns.length; i++) {
    if (cur.length > 1 && width + 3 + widths[i] > max) {
      groups.push(cur);
      cur = [0];
      width = 4 + widths[0];
    }
    cur.push(i);
    width += 3 + widths[i];
  }
  groups.push(cur);
  const out: string[] = [];
  for (const g of groups) {
    if (out.length) out.push('');
    out.push(
      `| ${g.map((i) => pad(columns[i].header, i)).join(' | ')} |`,
      `|${g.map((i) => (columns[i].align === 'right' ? `${'-'.repeat(widths[i] + 1)}:` : `:${'-'.repeat(widths[i] + 1)}`)).join('|')}|`,
      ...cells.map((row) => `| ${g.map((i) => pad(row[i], i)).join(' | ')} |`),
    );
  }
  if (!rows.length) out.push('(no runs)');
  if (marked.some(Boolean)) {
    out.push('', '* best in its column (lowest runtime, loss, steps and memory; highest tokens/s, MFU and GPU util). MB = 2^20 bytes.');
  }
  return `${out.join('\n')}\n`;
}
