// Experiments for `lora eval compare`: eval summaries and bench results.json runs become rows; the
// best value per column is marked in the direction that column ranks.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { compareTable, loadExperiments, type BenchResults, type EvalSummary } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'lora-eval-compare-'));

function summary(name: string, bleu: number, rouge1: number, p50: number): EvalSummary {
  const lat = { mean: p50, p50, p95: p50 * 2, max: p50 * 3 };
  return {
    schema: 'lora-eval/1', name, createdAt: '2025-01-01T00:00:00Z', config: {}, count: 4, errors: 0, emptyOutputs: 0, emptyReferences: 0,
    metrics: { bleu, rouge1, meteor: 0.25 }, corpus: { count: 4, emptyPredictions: 0, emptyReferences: 0 },
    latency: { timeToFirstTokenMs: lat, totalMs: lat }, tokens: { in: 100, out: 40, total: 140 }, outputTokensPerSec: 10, wallSec: 1,
  };
}

function write(path: string, obj: unknown): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, JSON.stringify(obj));
  return path;
}

describe('loadExperiments + compareTable', () => {
  it('reads eval folders and bench runs, and marks the best value per column', async () => {
    write(join(dir, 'base', 'summary.json'), summary('lora-eval', 10, 0.3, 50));
    const tuned = write(join(dir, 'tuned', 'summary.json'), summary('tuned-r8', 20, 0.2, 40));
    const bench = {
      schema: 'lora-bench/1',
      runs: [
        { label: 'r=8', finalLoss: 1.5, eval: { bleu: 15, rouge1: 0.25, meteor: 0.3, latency_p50_ms: 30 } },
        { label: 'r=128', finalLoss: 1.2, eval: { bleu: 5, rouge1: 0.4, meteor: 0.1, latency_p50_ms: 45 } },
        { label: 'r=256', finalLoss: 1.3 },
      ],
    } as unknown as BenchResults;
    write(join(dir, 'sweep', 'results.json'), bench);
    const { experiments, notes } = await loadExperiments([join(dir, 'base'), tuned, join(dir, 'sweep')]);
    expect(experiments.map((e) => e.name)).toEqual(['base', 'tuned-r8', 'sweep/r=8', 'sweep/r=128', 'sweep/r=256']);
    expect(experiments[0]).toMatchObject({ kind: 'eval', count: 4, metrics: { bleu: 10, ttft_p50_ms: 50, latency_p95_ms: 100, tokens_out: 40, errors: 0 } });
    expect(experiments[3]).toMatchObject({ kind: 'bench', metrics: { bleu: 5, final_loss: 1.2 } });
    expect(notes).toEqual([expect.stringMatching(/run r=256 has no eval metrics \(run lora bench with --eval N\)/)]);

    const t = compareTable(experiments, notes);
    const col = (key: string) => t.columns.findIndex((c) => c.key === key);
    const best = (key: string) => t.rows.filter((r) => r.cells[col(key)].best).map((r) => r.experiment.name);
    expect(t.columns.slice(0, 4).map((c) => c.key)).toEqual(['count', 'bleu', 'rouge1', 'meteor']);
    expect(best('bleu')).toEqual(['tuned-r8']);
    expect(best('rouge1')).toEqual(['sweep/r=128']);
    expect(best('meteor')).toEqual(['sweep/r=8']);
    expect(best('latency_p50_ms')).toEqual(['sweep/r=8']); // lower is better
    expect(best('final_loss')).toEqual(['sweep/r=128']);
    expect(best('count')).toEqual([]); // not ranked
    expect(best('errors')).toEqual([]); // every experiment that has it ties
    expect(t.rows[4].cells[col('bleu')]).toEqual({ value: null, text: 'n/a', best: false });
    expect(t.rows[1].cells[col('bleu')].text).toBe('20.00');
  });

  it('names what is wrong with a path', async () => {
    await expect(loadExperiments([join(dir, 'nope')])).rejects.toThrow(/no such file or folder/);
    mkdirSync(join(dir, 'empty'));
    await expect(loadExperiments([join(dir, 'empty')])).rejects.toThrow(/neither summary.json .* nor results.json/);
    writeFileSync(join(dir, 'broken.json'), '{"schema": ');
    await expect(loadExperiments([join(dir, 'broken.json')])).rejects.toThrow(/not valid JSON/);
    writeFileSync(join(dir, 'other.json'), '{"schema": "something/1"}');
    await expect(loadExperiments([join(dir, 'other.json')])).rejects.toThrow(/neither lora-eval\/1 .* nor lora-bench\/1/);
  });

  it('tells apart experiments with the same name', async () => {
    write(join(dir, 'a', 'x', 'summary.json'), summary('lora-eval', 1, 0.1, 10));
    write(join(dir, 'b', 'x', 'summary.json'), summary('lora-eval', 2, 0.2, 20));
    const { experiments } = await loadExperiments([join(dir, 'a', 'x'), join(dir, 'b', 'x')]);
    expect(experiments[0].name).toMatch(/^x \(.*a\/x\/summary\.json\)$/);
    expect(experiments[1].name).toMatch(/^x \(.*b\/x\/summary\.json\)$/);
  });
});
