// The CLI on the Llama-shaped families: `lora train` on a tiny SmolLM2-shaped llama folder (the
// generator `lora bench --arch llama` uses, without its warm-up) — the loss falls and a --resume from
// a checkpoint reaches the uninterrupted adapter's bits —, `generate` with that adapter, `eval`,
// `bench --model DIR` on a qwen2 and a qwen3 variant (biases, QK-norm), and `lora check` on the
// PyTorch fixtures of every family (exit 0; another family's adapter, or OPT's, exits 1 saying why).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { beforeAll, describe, expect, it } from 'vitest';

import { ensureTinyLlama, syntheticCodeInstructions } from '@lora/sdk';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'dist', 'main.js');
const fixtures = join(here, '..', '..', 'sdk', 'test', 'fixtures');
const dir = mkdtempSync(join(tmpdir(), 'lora-families-cli-'));
const data = join(dir, 'data.jsonl');
const models: Record<string, string> = {};

function lora(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  const records = syntheticCodeInstructions(48, 3);
  writeFileSync(data, records.map((r) => JSON.stringify(r)).join('\n'));
  for (const modelType of ['llama', 'qwen2', 'qwen3'] as const) {
    models[modelType] = (await ensureTinyLlama(join(dir, modelType), records, { modelType, kvHeads: 1, layers: 2, merges: 0, maxPositions: 256, warmupRounds: 0 })).dir;
  }
}, 60_000);

describe('lora train / generate / eval on a tiny llama folder', () => {
  it('trains (loss falls), resumes from a checkpoint to the same bits, generates and evaluates with the adapter', () => {
    const train = (out: string, ...extra: string[]) => lora(['train', '--model', models.llama, '--data', data, '--out', out, '--batch', '4', '--seq', '96',
      '--split', '0.75', '--steps', '8', '--save-steps', '4', '--lr', '3e-3', '--targets', 'all-linear', ...extra]);
    const full = join(dir, 'full');
    const r = train(full);
    expect(r.status, r.stderr).toBe(0);
    const losses = readFileSync(join(full, 'trainer_log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).loss as number);
    expect(losses.length).toBe(8);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-3))).toBeLessThan(mean(losses.slice(0, 3)));
    const config = JSON.parse(readFileSync(join(full, 'adapter_config.json'), 'utf8'));
    expect([...config.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);

    // A run that stopped after step 4: only its checkpoint is there; --resume finishes steps 5-8.
    const part = join(dir, 'part');
    mkdirSync(join(part, 'checkpoints'), { recursive: true });
    cpSync(join(full, 'checkpoints', 'checkpoint-4'), join(part, 'checkpoints', 'checkpoint-4'), { recursive: true });
    const resumed = train(part, '--resume');
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain('resuming at step 4');
    expect(readFileSync(join(part, 'adapter_model.safetensors'))).toEqual(readFileSync(join(full, 'adapter_model.safetensors')));

    const g = lora(['generate', '--model', models.llama, '--adapter', full, '--instruction', 'Reverse a list in Python.', '--max-new-tokens', '8', '--json']);
    expect(g.status, g.stderr).toBe(0);
    const out = JSON.parse(g.stdout);
    expect(out.tokensOut).toBeGreaterThan(0);
    expect(out.tokensOut).toBeLessThanOrEqual(8);

    const e = lora(['eval', '--model', models.llama, '--adapter', full, '--data', data, '--split', '0.75', '--limit', '2', '--max-new-tokens', '4', '--json']);
    expect(e.status, e.stderr).toBe(0);
  }, 120_000);
});

describe('lora bench --model DIR on qwen2 and qwen3 folders', () => {
  it.each(['qwen2', 'qwen3'])('runs a 2-step rank sweep on %s', (family) => {
    const out = join(dir, `bench-${family}`);
    const r = lora(['bench', '--model', models[family], '--data', data, '--steps', '2', '--ranks', '4', '--batch', '2', '--seq', '64', '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(results.runs.length).toBe(1);
    expect(Number.isFinite(results.runs[0].finalLoss)).toBe(true);
  }, 60_000);
});

describe('lora check on the PyTorch fixtures of every family', () => {
  // bf16 and the other backends: packages/sdk/test/parity-llama.test.ts (same runCheck).
  it.each(['llama-tiny', 'qwen2-tiny', 'qwen3-tiny'])('%s passes, and fails with another adapter', (name) => {
    const f = join(fixtures, name);
    const r = lora(['check', '--model', join(f, 'model'), '--adapter', join(f, 'adapter'), '--expect', join(f, 'expect.safetensors')]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/30 passed, 0 failed/);
    const other = name === 'qwen3-tiny' ? 'llama-tiny' : 'qwen3-tiny';
    const bad = lora(['check', '--model', join(f, 'model'), '--adapter', join(fixtures, other, 'adapter'), '--expect', join(f, 'expect.safetensors')]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/has shape \[\d+, 4\], this model needs \[\d+, 4\] \(an adapter for another model\?\) \[E_WEIGHTS_MISMATCH\]/);
    // An OPT adapter (fc1, fc2, out_proj): modules this family does not have.
    const opt = lora(['check', '--model', join(f, 'model'), '--adapter', join(fixtures, 'opt-tiny-postln', 'adapter'), '--expect', join(f, 'expect.safetensors')]);
    expect(opt.status).toBe(1);
    expect(opt.stderr).toMatch(/target module "\w+" is not one of this model's q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj \[E_CONFIG\]/);
  }, 60_000);
});
