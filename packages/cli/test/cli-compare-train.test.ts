// `lora eval compare` on `lora train --out` folders: final metrics from train_results.json, the loss
// curve from trainer_log.jsonl, the runs' config (data, split, seed) as columns, a warning when the
// runs were not measured alike, and no star for a tie.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'lora-compare-train-'));

/** A train folder as lora train writes it (HF Trainer's file names and keys). */
function trainFolder(name: string, o: { split: number; loss: number[]; trainLoss: number; runtime: number; samplesPerSec: number }) {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'training_args.json'), JSON.stringify({ data: { path: '/data/code_alpaca.json', sha256: 'ab'.repeat(32), records: 100 }, split: o.split, seed: 42, lr: 2e-4, r: 8 }));
  writeFileSync(join(d, 'trainer_log.jsonl'), o.loss.map((l, i) => JSON.stringify({ step: i + 1, epoch: (i + 1) / o.loss.length, loss: l, lr: 2e-4 })).join('\n') + '\n');
  writeFileSync(join(d, 'train_results.json'), JSON.stringify({ epoch: 1, train_loss: o.trainLoss, train_runtime: o.runtime, train_samples_per_second: o.samplesPerSec }));
  return d;
}

const lora = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

describe('lora eval compare with train folders', () => {
  const a = trainFolder('r8', { split: 0.5, loss: [2.5, 2.1, 1.9], trainLoss: 2.1667, runtime: 30, samplesPerSec: 12.5 });
  const b = trainFolder('r64', { split: 0.9, loss: [2.4, 1.8, 1.6], trainLoss: 1.9333, runtime: 30, samplesPerSec: 10 });

  it('tabulates final metrics beside the config, stars a unique best only, and warns about the split', () => {
    const html = join(dir, 'compare.html');
    const r = lora('eval', 'compare', a, b, '--html', html);
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^\| experiment +\| data +\| split +\| seed +\| train loss \(mean\) +\| train runtime s +\| train samples\/s +\|$/);
    const row8 = lines.find((l) => l.startsWith('| r8 '))!;
    const row64 = lines.find((l) => l.startsWith('| r64 '))!;
    expect(row8).toMatch(/\| code_alpaca\.json \| 0\.5 +\| 42 +\|/);
    expect(row64).toMatch(/1\.9333\*/); // lowest mean loss
    expect(row8).toMatch(/12\.50\*/); // highest throughput
    expect(r.stdout).not.toMatch(/30\.00\*/); // equal runtimes: a tie, no star
    expect(r.stderr).toMatch(/warning: the rows use different splits \(r8: 0\.5, r64: 0\.9\)/);
    expect(r.stdout).toMatch(/warning: the rows use different splits/);
    const page = readFileSync(html, 'utf8');
    expect(page).toContain('Training loss per step');
    expect(page).toMatch(/<th class="left cfg" scope="col" title="not ranked">split<\/th>/);
  });

  it('gives the config per row in --json, and no warning when the runs match', () => {
    const c = trainFolder('r8-again', { split: 0.5, loss: [2.5, 2.2], trainLoss: 2.35, runtime: 20, samplesPerSec: 11 });
    const r = lora('eval', 'compare', a, c, '--json');
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    const j = JSON.parse(r.stdout);
    expect(j.rows.map((x: { config: { split: number } }) => x.config.split)).toEqual([0.5, 0.5]);
    expect(j.warnings).toEqual([]);
  });
});
