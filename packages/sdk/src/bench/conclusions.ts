// Sentences computed from a sweep's numbers, printed under the table and in the report.
import type { BenchResults } from './results.js';

const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

export function conclusionsFor(r: BenchResults): string[] {
  const runs = r.runs.filter((x) => Number.isFinite(x.finalLoss));
  const out: string[] = [];
  if (runs.length < 2) return runs.length ? [`One run: final loss ${fmt(runs[0].finalLoss)} in ${fmt(runs[0].runtimeSec, 1)} s.`] : [];
  const base = runs[0];
  if (r.sweep === 'rank') {
    for (let i = 1; i < runs.length; i++) {
      const a = runs[i - 1];
      const b = runs[i];
      const gain = a.finalLoss - b.finalLoss;
      out.push(
        `${a.label} → ${b.label}: final loss ${fmt(a.finalLoss)} → ${fmt(b.finalLoss)} (${gain >= 0 ? '−' : '+'}${fmt(Math.abs(gain))}), ` +
          `${fmt((gain / (b.rank - a.rank)) * 1000, 4)} per 1000 added rank; runtime ×${fmt(b.runtimeSec / a.runtimeSec, 2)}, ` +
          `trainable params ×${fmt(b.trainableParams / a.trainableParams, 1)}.`,
      );
    }
    const best = runs.reduce((x, y) => (y.finalLoss < x.finalLoss ? y : x));
    out.push(`Lowest final loss: ${best.label} (${fmt(best.finalLoss)}); it cost ${fmt(best.runtimeSec / base.runtimeSec, 2)}× the runtime of ${base.label}.`);
    const last = runs[runs.length - 1];
    const rssA = base.memory.rssBytes.mean / 2 ** 20;
    const rssB = last.memory.rssBytes.mean / 2 ** 20;
    out.push(`Mean process memory ${fmt(rssA, 0)} MB at ${base.label} and ${fmt(rssB, 0)} MB at ${last.label} (${rssB >= rssA ? '+' : '−'}${fmt(Math.abs(rssB - rssA), 0)} MB for ${fmt((last.trainableParams - base.trainableParams) / 1e6, 2)} M more trainable parameters with their grads and AdamW moments).`);
  } else {
    const f32 = runs.find((x) => x.baseDtype === 'f32') ?? base;
    for (const x of runs) {
      if (x === f32 || !x.quant || !f32.quant) continue;
      out.push(
        `${x.label}: base ${fmt(x.quant.baseBytes / 2 ** 20, 1)} MB (${fmt((100 * x.quant.baseBytes) / f32.quant.baseBytes, 0)}% of f32), ` +
          `reconstruction NMSE ${x.quant.reconstructionNmse.toExponential(2)}, final loss ${fmt(x.finalLoss)} vs ${fmt(f32.finalLoss)} in f32, ` +
          `${fmt(x.tokensPerSec, 0)} tokens/s.`,
      );
    }
  }
  return out;
}
