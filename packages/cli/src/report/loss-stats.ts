// What the report says about loss curves: "steps to loss X" at thresholds taken from the runs' own
// range (so that no threshold is met by every run at its first log, or by none), and how noisy each
// run's final loss is, so that a difference smaller than the step-to-step noise is not presented as
// an effect of the rank.
import type { BenchResults, RunResult } from '@lora/sdk';

import { isFiniteNumber, num } from './svg.js';

const rounds = (r: RunResult) => (r.logRounds ?? []).filter((g) => isFiniteNumber(g.step) && isFiniteNumber(g.meanLoss));

/** A round number between lo and hi with as few decimals as the gap allows. */
function roundWithin(x: number, lo: number, hi: number): number {
  for (let d = 1; d <= 4; d++) {
    const v = Math.round(x * 10 ** d) / 10 ** d;
    if (v > lo && v < hi) return v;
  }
  return x;
}

/**
 * Loss thresholds from the runs' own curves (logging-round means, which average the per-step
 * noise): strictly below every run's first logged mean and no lower than the worst run's best, so
 * that every run starts above each threshold and reaches it. A loss curve falls fast and then
 * flattens, so evenly spaced thresholds are all met within the first logs by every run; these sit
 * at 3/4 and 9/10 of the way down, where the runs' speeds differ. None when the runs' ranges do not
 * overlap (one run never gets where another starts).
 */
export function ownRangeThresholds(results: BenchResults): number[] {
  const rs = (results.runs ?? []).map(rounds).filter((g) => g.length > 0);
  if (!rs.length) return [];
  const top = Math.min(...rs.map((g) => g[0].meanLoss));
  const floor = Math.max(...rs.map((g) => Math.min(...g.map((x) => x.meanLoss))));
  if (!(top > floor)) return [];
  const at = (f: number) => roundWithin(top - f * (top - floor), floor - 1e-12, top);
  return [...new Set([at(3 / 4), at(9 / 10)])].sort((a, b) => b - a);
}

/** The first logged step whose round mean is at or below the threshold; null: never reached. */
export function stepsToLoss(r: RunResult, threshold: number): number | null {
  return rounds(r).find((g) => g.meanLoss <= threshold)?.step ?? null;
}

/** Threshold labels as the table prints them (enough decimals to tell them apart). */
export function thresholdLabel(t: number): string {
  const s = String(t);
  const decimals = s.includes('.') ? s.split('.')[1].length : 0;
  return t.toFixed(Math.max(2, decimals));
}

/**
 * The final loss's noise: the standard deviation of the per-step losses over the last logging round
 * (the steps that the final figure summarises). Undefined with fewer than 3 steps there.
 */
export function finalLossNoise(r: RunResult): number | undefined {
  const steps = (r.steps ?? []).filter((s) => isFiniteNumber(s.loss));
  const every = Math.max(3, Math.round(steps.length / 10));
  const tail = steps.slice(-every).map((s) => num(s.loss));
  if (tail.length < 3) return undefined;
  const mean = tail.reduce((a, b) => a + b, 0) / tail.length;
  return Math.sqrt(tail.reduce((a, b) => a + (b - mean) ** 2, 0) / (tail.length - 1));
}

/**
 * Sentences for final-loss differences that the noise explains: two runs whose final losses differ
 * by less than the larger of their step-to-step standard deviations are as good as equal.
 */
export function noiseNotes(results: BenchResults): string[] {
  const runs = (results.runs ?? []).filter((r) => isFiniteNumber(r.finalLoss));
  const out: string[] = [];
  for (let i = 1; i < runs.length; i++) {
    const a = runs[i - 1];
    const b = runs[i];
    const noise = Math.max(finalLossNoise(a) ?? 0, finalLossNoise(b) ?? 0);
    const diff = Math.abs(a.finalLoss - b.finalLoss);
    if (noise > 0 && diff < noise) {
      out.push(`${a.label} vs ${b.label}: the final losses differ by ${diff.toFixed(3)}, less than the step-to-step noise (standard deviation ${noise.toFixed(3)} over the last steps), so this difference is not evidence of an effect.`);
    }
  }
  return out;
}

/** True when the runner-up is within the best run's noise (then no single run is marked best). */
export function withinNoise(results: BenchResults, best: number, values: number[]): boolean {
  const others = values.filter((v) => v !== best);
  if (!others.length) return true;
  const second = Math.min(...others.map((v) => Math.abs(v - best)));
  const noise = Math.max(0, ...(results.runs ?? []).map((r) => finalLossNoise(r) ?? 0));
  return second < noise;
}
