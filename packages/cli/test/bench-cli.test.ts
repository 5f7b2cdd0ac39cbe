// `lora bench` as a user runs it: the embedded default end to end (short: 2 steps, two small ranks,
// model generated into a temp cache), and --gpu on a machine without a GPU.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { native } from '@lora/core-native';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const tmp = mkdtempSync(join(tmpdir(), 'lora-bench-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('lora bench', () => {
  it('runs the embedded default and writes results, report and charts', () => {
    const out = join(tmp, 'out');
    const r = spawnSync(process.execPath, [cli, 'bench', '--steps', '2', '--ranks', '4,8', '--out', out], {
      encoding: 'utf8',
      env: { ...process.env, LORA_CACHE_DIR: join(tmp, 'cache') },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warm-up round 2\/2/);
    expect(r.stdout).toMatch(/trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: [\d.]+/);
    expect(r.stdout).toMatch(/Model: tiny OPT in opt-350m's layout/);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(results.schema).toBe('lora-bench/1');
    expect(results.runs.map((x: { rank: number }) => x.rank)).toEqual([4, 8]);
    for (const run of results.runs) {
      expect(run.steps.length).toBe(2);
      expect(Number.isFinite(run.finalLoss)).toBe(true);
      expect(run.memory.samples.length).toBeGreaterThan(0);
    }
    expect(existsSync(join(out, 'report.html'))).toBe(true);
    expect(existsSync(join(out, 'charts', 'loss.svg'))).toBe(true);
  });

  it('with --gpu and no usable GPU, exits 1 naming what is missing', (ctx) => {
    if (native().cudaInfo().usable) ctx.skip();
    const r = spawnSync(process.execPath, [cli, 'bench', '--gpu'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--gpu needs a CUDA GPU, and CUDA unavailable: /);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
