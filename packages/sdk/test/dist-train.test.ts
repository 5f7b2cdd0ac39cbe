// Data-parallel training with real Open MPI ranks (`mpirun -np N node dist-train-rank.mjs`) on the tiny
// pre-LN fixture: N ranks × batch b follow 1 process × batch N·b, a killed rank ends the job within
// seconds and --resume then reaches the uninterrupted run's bits, a stuck rank ends it after the
// collective timeout, mismatched seeds are refused.
// Skips with the reason when mpirun or the MPI plug-in is missing (scripts/setup-system.sh installs them).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { distInfo } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const rankScript = join(here, 'dist-train-rank.mjs');
const tmp = mkdtempSync(join(tmpdir(), 'lora-dist-'));
const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
const info = distInfo();
const skip = mpirun.status !== 0 ? 'mpirun not found (install openmpi-bin: scripts/setup-system.sh)' : !info.usable ? info.reason : '';

// Open MPI's documented switches for CI: running as root, more ranks than cores, and no CMA
// single-copy in containers (ptrace is not allowed there, vader falls back to copy-in/copy-out).
const mpiEnv = {
  ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_rmaps_base_oversubscribe: '1',
  OMPI_MCA_btl_vader_single_copy_mechanism: 'none', LORA_NUM_THREADS: '1',
};

// The fixture with the model's own residual dropout off: a dropout mask depends on the element's
// index within a rank's slice, so with dropout on N ranks draw other masks than one process does.
const modelDir = join(tmp, 'model');
cpSync(join(here, 'fixtures', 'opt-tiny-preln', 'model'), modelDir, { recursive: true });
const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8'));
writeFileSync(join(modelDir, 'config.json'), JSON.stringify({ ...config, dropout: 0 }));

interface RankResult { rank: number; size: number; reason: string; losses: number[]; weights: number[][][] }

let runs = 0;
function train(ranks: number, spec: Record<string, unknown>, mpiArgs: string[] = []) {
  const out = join(tmp, `run-${runs++}`);
  mkdirSync(out, { recursive: true });
  const specPath = join(out, 'spec.json');
  writeFileSync(specPath, JSON.stringify({ steps: 8, seed: 7, timeoutS: 60, modelDir, out, ...spec }));
  const t0 = performance.now();
  const args = ranks === 0 ? [rankScript, specPath] : ['-np', String(ranks), ...mpiArgs, process.execPath, rankScript, specPath];
  const p = spawnSync(ranks === 0 ? process.execPath : 'mpirun', args, { encoding: 'utf8', env: mpiEnv, timeout: 120_000 });
  const read = (r: number): RankResult | undefined => (existsSync(join(out, `rank-${r}.json`)) ? JSON.parse(readFileSync(join(out, `rank-${r}.json`), 'utf8')) : undefined);
  return { status: p.status, output: `${p.stdout}\n${p.stderr}`, seconds: (performance.now() - t0) / 1000, ranks: Array.from({ length: Math.max(1, ranks) }, (_, r) => read(r)) };
}

/** Max relative loss difference, max |Δw| and relative RMS of Δw between two runs. */
function compare(a: RankResult, b: RankResult) {
  let loss = 0;
  a.losses.forEach((l, i) => (loss = Math.max(loss, Math.abs(l - b.losses[i]) / Math.abs(l))));
  let maxAbs = 0;
  let ss = 0;
  let sd = 0;
  a.weights.forEach((m, i) => m.forEach((t, j) => t.forEach((v, k) => {
    const d = b.weights[i][j][k] - v;
    maxAbs = Math.max(maxAbs, Math.abs(d));
    ss += v * v;
    sd += d * d;
  })));
  return { loss, maxAbs, relRms: Math.sqrt(sd / ss) };
}

// Tolerances: a rank's slice sums its rows' contributions to dA/dB in f32, and rank 0 adds the
// slices' sums: the same terms in another order, ~1e-7 relative per step (seen: losses 1.6e-8 apart,
// the step-1 loss equal). AdamW divides by sqrt(v), so an element whose gradient is near 0 can move
// by up to lr per step on a sign flip; over 8 steps at lr 1e-2 the weights moved ~1e-1 and differed
// by at most 3.5e-6 (relative RMS 1.1e-6) in the runs seen here — bounds 10–100× above that.
const TOL = { loss: 1e-6, maxAbs: 1e-4, relRms: 1e-5 };

describe.skipIf(skip !== '')(`data-parallel training over mpirun${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('2 ranks × batch 2 (grad-accum 2) follow 1 process × batch 4; every rank holds the same bits', () => {
    const one = train(0, { batchSize: 4, gradAccum: 2 });
    const two = train(2, { batchSize: 2, gradAccum: 2 });
    expect(one.status, one.output).toBe(0);
    expect(two.status, two.output).toBe(0);
    const [a, b] = two.ranks;
    expect(a!.size).toBe(2);
    expect(a!.losses.length).toBe(8);
    expect(b!.weights).toEqual(a!.weights);
    expect(b!.losses).toEqual(a!.losses);
    const d = compare(one.ranks[0]!, a!);
    expect(d.loss).toBeLessThan(TOL.loss);
    expect(d.maxAbs).toBeLessThan(TOL.maxAbs);
    expect(d.relRms).toBeLessThan(TOL.relRms);
  }, 120_000);

  it('3 ranks over TCP (no shared memory) × batch 1 follow 1 process × batch 3', () => {
    const one = train(0, { batchSize: 3, steps: 6 });
    const three = train(3, { batchSize: 1, steps: 6 }, ['--mca', 'btl', 'tcp,self']);
    expect(three.status, three.output).toBe(0);
    expect(three.ranks.every((r) => r?.size === 3)).toBe(true);
    const d = compare(one.ranks[0]!, three.ranks[0]!);
    expect(d.loss).toBeLessThan(TOL.loss);
    expect(d.maxAbs).toBeLessThan(TOL.maxAbs);
    expect(three.ranks[2]!.weights).toEqual(three.ranks[0]!.weights);
  }, 120_000);

  it('a killed rank ends every rank within seconds; --resume reaches the uninterrupted bits', () => {
    const full = train(2, { batchSize: 2, checkpointDir: join(tmp, 'ckpt-full'), saveSteps: 2 });
    expect(full.status, full.output).toBe(0);
    const dir = join(tmp, 'ckpt-killed');
    // Rank 1 SIGKILLs itself after step 5; rank 0 is then blocked in step 6's all-reduce. The
    // collective timeout is 60 s, so only mpirun ending the job can make this quick.
    const killed = train(2, { batchSize: 2, checkpointDir: dir, saveSteps: 2, killRank: 1, killAtStep: 5 });
    expect(killed.status).not.toBe(0);
    expect(killed.seconds).toBeLessThan(30);
    expect(killed.ranks.every((r) => r === undefined)).toBe(true);
    expect(existsSync(join(dir, 'checkpoint-4'))).toBe(true);
    expect(existsSync(join(dir, 'checkpoint-6'))).toBe(false);
    const resumed = train(2, { batchSize: 2, checkpointDir: dir, saveSteps: 2, resume: true });
    expect(resumed.status, resumed.output).toBe(0);
    expect(resumed.ranks[0]!.losses).toEqual(full.ranks[0]!.losses);
    expect(resumed.ranks[0]!.weights).toEqual(full.ranks[0]!.weights);
  }, 120_000);

  it('a stuck rank (alive, not calling the collective) ends the job after the collective timeout', () => {
    // Rank 1 blocks for 120 s after step 3; rank 0's next all-reduce gives up after timeoutS = 5 s with
    // ERR_LORA_DIST_TIMEOUT, exits non-zero, and mpirun ends rank 1.
    const r = train(2, { batchSize: 2, timeoutS: 5, stallRank: 1, stallAtStep: 3, stallS: 120 });
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/ERR_LORA_DIST_TIMEOUT|did not complete within 5 s/);
    expect(r.seconds).toBeLessThan(60);
  }, 120_000);

  it('refuses to start when a rank has another seed, on every rank', () => {
    const r = train(2, { batchSize: 2, seedByRank: { 1: 8 } });
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/ranks 1 of 2 were started with settings that differ from rank 0's \(rank 1: seed: 7 on rank 0, 8 here/);
    expect(r.ranks.every((x) => x === undefined)).toBe(true);
  }, 120_000);
});
