// `lora eval --adapter DIR` never silently scores training data: it reads the run's
// training_args.json (data path + sha256, split, seed), evaluates the held-out complement by
// default, and refuses a request that overlaps the training records unless --allow-train-overlap.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { beforeAll, describe, expect, it } from 'vitest';

import { ensureTinyModel, OptForCausalLM, splitTrainTest, type InstructionRecord } from '@lora/sdk';

import { findTrainingRecord } from '../dist/commands/eval-split.js';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'lora-eval-split-'));
const records: InstructionRecord[] = Array.from({ length: 12 }, (_, i) => ({ instruction: `Print the number ${i}.`, input: '', output: `print(${i})` }));
const data = join(dir, 'data.jsonl');
const bytes = records.map((r) => JSON.stringify(r)).join('\n');
let model = '';
const run = join(dir, 'run');

const lora = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const evalArgs = (out: string, ...extra: string[]) => ['eval', '--model', model, '--adapter', run, '--max-new-tokens', '2', '--metrics', 'bleu', '--out', join(dir, out), ...extra];
const evaluated = (out: string) =>
  readFileSync(join(dir, out, 'traces.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.stringify(JSON.parse(l))).map((l) => records.findIndex((r) => l.includes(r.instruction)));

function writeArgs(folder: string, o: { split: number; seed: number; path?: string; sha256?: string }) {
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'training_args.json'), JSON.stringify({ data: { path: o.path ?? data, sha256: o.sha256 ?? createHash('sha256').update(bytes).digest('hex') }, split: o.split, seed: o.seed }));
}

beforeAll(async () => {
  writeFileSync(data, bytes);
  model = (await ensureTinyModel(join(dir, 'model'), records, { hidden: 32, ffn: 64, layers: 1, heads: 2, embedDim: 16, merges: 0, maxPositions: 256, warmupRounds: 0 })).dir;
  using m = await OptForCausalLM.fromPretrained(model, { device: 'cpu' });
  m.addLora({ r: 2, alpha: 8, targetModules: ['q_proj', 'v_proj'], seed: 1 });
  await m.saveAdapter(run);
  writeArgs(run, { split: 0.5, seed: 7 });
}, 120_000);

describe('lora eval --adapter reads the run\'s training_args.json', () => {
  it('evaluates exactly the held-out complement by default (no --data, --split or --seed given)', () => {
    const r = lora(...evalArgs('default'));
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/6 held-out records of 12 \(split 0\.5, seed 7, from .*training_args\.json\)/);
    const indices = records.map((_, i) => i);
    const { train, test } = splitTrainTest(indices, 0.5, 7);
    const seen = evaluated('default');
    expect(seen.sort()).toEqual([...test].sort());
    expect(seen.some((i) => train.includes(i))).toBe(false);
    const summary = JSON.parse(readFileSync(join(dir, 'default', 'summary.json'), 'utf8'));
    expect(summary.config).toMatchObject({ data, split: 0.5, seed: 7, trainOverlap: { records: 0, method: 'same-data-indices' } });
  }, 120_000);

  it('refuses another split or seed that would score training records, and scores them with a loud warning on request', () => {
    for (const extra of [['--split', '0.25'], ['--seed', '42'], ['--split', '0']]) {
      const r = lora(...evalArgs('refused', '--data', data, ...extra));
      expect(r.status, extra.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/of the \d+ records to evaluate (was|were) in the adapter's training set .*--allow-train-overlap.*\[E_EVAL_TRAIN_OVERLAP\]/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    const r = lora(...evalArgs('overlap', '--split', '0', '--limit', '3', '--allow-train-overlap'));
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/WARNING: \d of the 3 records to evaluate (was|were) in the adapter's training set/);
    const summary = JSON.parse(readFileSync(join(dir, 'overlap', 'summary.json'), 'utf8'));
    expect(summary.config.trainOverlap.records).toBeGreaterThan(0);
  }, 120_000);

  it('finds training records by content in other data, and says when nothing is held out', () => {
    const trainIdx = splitTrainTest(records.map((_, i) => i), 0.5, 7).train;
    const mixed = join(dir, 'mixed.jsonl');
    writeFileSync(mixed, [records[trainIdx[0]], { instruction: 'Something new.', input: '', output: 'x' }].map((x) => JSON.stringify(x)).join('\n'));
    const r = lora(...evalArgs('mixed', '--data', mixed, '--split', '0'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/1 of the 2 records to evaluate was in the adapter's training set.*\[E_EVAL_TRAIN_OVERLAP\]/);

    const all = join(dir, 'all-run');
    writeArgs(all, { split: 1, seed: 7 });
    const s = lora('eval', '--model', model, '--adapter', all);
    expect(s.status).toBe(1);
    expect(s.stderr).toMatch(/trained with split 1 .*none of its records is held out.*\[E_EVAL_NO_HELD_OUT\]/);
  }, 120_000);

  it('finds training_args.json above a checkpoint folder', () => {
    const ckpt = join(run, 'checkpoints', 'checkpoint-4');
    mkdirSync(ckpt, { recursive: true });
    expect(findTrainingRecord(ckpt)).toMatchObject({ file: join(run, 'training_args.json'), dataPath: data, split: 0.5, seed: 7 });
    expect(findTrainingRecord(join(dir, 'model'))).toBeUndefined();
  });
});
