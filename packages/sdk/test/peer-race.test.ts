// `npm run bench:peer` smoke test: bench/peer/race.mjs --quick on a 1-layer OPT-350m layout at a
// short sequence races our training step against PyTorch's and writes both sides and finite ratios.
// Skipped (with the reason printed) where /usr/bin/python3 cannot import torch: CI machines need
// not carry PyTorch just for this.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const race = join(root, 'bench', 'peer', 'race.mjs');

function torchMissing(): string | undefined {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (r.error) return `/usr/bin/python3 could not run (${r.error.message})`;
  if (r.status !== 0) return `/usr/bin/python3 -c 'import torch' failed: ${(r.stderr || '').trim().split('\n').pop()}`;
  return undefined;
}

const missing = torchMissing();
if (missing) console.log(`peer-race.test: skipped — ${missing} (install python3-torch to run the PyTorch race)`);

describe.skipIf(missing !== undefined)('bench:peer race (quick)', () => {
  it('runs both sides and writes finite ratios', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'lora-peer-')), 'peer.json');
    const r = spawnSync(process.execPath, [race, '--quick', '--layers', '1', '--seq', '64', '--steps', '2', '--warmup', '1', '--no-peak', '--out', out], {
      cwd: root, encoding: 'utf8', timeout: 300_000,
    });
    expect(r.status, `race.mjs failed:\n${r.stderr}\n${r.stdout}`).toBe(0);
    expect(r.stdout).toContain('ours/pytorch');
    const json = JSON.parse(readFileSync(out, 'utf8'));
    expect(json.bench).toBe('peer-race');
    expect(json.complete).toBe(true);
    expect(json.machine.cpu).toBeTruthy();
    expect(json.machine.loadavg_start).toHaveLength(3);
    expect(json.machine.loadavg_end).toHaveLength(3);
    expect(json.versions.torch).toBeTruthy();
    expect(json.settings).toMatchObject({ layers: 1, seq: 64, batch: 4, threads: 2, steps: 2 });
    expect(json.runs).toHaveLength(1);
    const run = json.runs[0];
    expect(run).toMatchObject({ r: 8, dtype: 'bf16' });
    for (const side of [run.ours, run.theirs]) {
      expect(side.steps).toBe(2);
      expect(side.lora).toMatchObject({ r: 8, alpha: 32, dropout: 0.1, targets: ['q_proj', 'k_proj', 'v_proj'] });
      expect(side.config).toMatchObject({ hidden_size: 1024, ffn_dim: 4096, num_hidden_layers: 1, vocab_size: 50272, word_embed_proj_dim: 512, dropout: 0.1 });
      expect(side.tokens_per_s).toBeGreaterThan(0);
      expect(side.peak_rss_mb).toBeGreaterThan(0);
      expect(Number.isFinite(side.loss_last)).toBe(true);
    }
    expect(run.ours.impl).toBe('lora');
    expect(run.theirs.impl).toBe('pytorch');
    // Same shapes and trainable parameters on both sides, so the FLOP counts agree.
    expect(run.ours.params.trainable).toBe(run.theirs.params.trainable);
    expect(run.ours.gflop_per_token).toBeCloseTo(run.theirs.gflop_per_token, 3);
    for (const k of ['tokens_per_s', 'ms_per_step', 'peak_rss', 'gflops']) {
      expect(Number.isFinite(run.ratios[k]), k).toBe(true);
      expect(run.ratios[k]).toBeGreaterThan(0);
    }
    expect(run.ours.profile.ops.length).toBeGreaterThan(5);
  });
});
