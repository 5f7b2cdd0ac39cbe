// Issue 18's trainer items: a checkpoint is written (and called good) only when every LoRA value
// and AdamW moment is finite; floats past f32's range are refused; resume refuses every setting that
// changes the trajectory and names it (activation checkpointing may differ); a damaged newest
// checkpoint falls back to the previous one, and checksums catch bit flips; stale temp folders of
// dead runs are removed; --save-total-limit; --resume with nothing to resume is an error; the NaN
// stop names its likely cause.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import {
  buildByteLevelTokenizer, OptForCausalLM, SafetensorsFile, syntheticCodeInstructions, tokenizeRecord, Trainer, type TrainEvent, type TrainerOptions,
} from '../src/index.js';

const modelDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'opt-tiny-preln', 'model');
const tok = buildByteLevelTokenizer();
const examples = syntheticCodeInstructions(32, 3).map((r) => tokenizeRecord(tok, r, { maxLength: 40 }));
const tmp = mkdtempSync(join(tmpdir(), 'lora-train-ckpt-'));

async function model(dropout = 0.1): Promise<OptForCausalLM> {
  const m = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu' });
  m.addLora({ r: 4, alpha: 16, dropout, targetModules: ['q_proj', 'v_proj'], seed: 1 });
  return m;
}

const opts = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
  examples, batchSize: 4, seq: 40, lr: 1e-2, seed: 7, maxSteps: 4, saveSteps: 2, ...extra,
});

async function allValues(file: string): Promise<Float32Array[]> {
  const f = await SafetensorsFile.open(file);
  try {
    const out: Float32Array[] = [];
    for (const k of f.keys()) out.push((await f.read(k)).data as Float32Array);
    return out;
  } finally {
    await f.close();
  }
}

async function run(o: TrainerOptions, dropout = 0.1) {
  using m = await model(dropout);
  const events: TrainEvent[] = [];
  const r = await new Trainer(m, { ...o, onEvent: (e) => events.push(e) }).train();
  return { r, events, bits: m.lora!.modules().flatMap((x) => [x.a.bytes(), x.b.bytes()]) };
}

describe('checkpoints that are good', () => {
  it('never writes a checkpoint with non-finite values (--lr 1e38 --save-steps 1)', async () => {
    const dir = join(tmp, 'huge-lr');
    const { r } = await run(opts({ lr: 1e38, maxGradNorm: 0, saveSteps: 1, maxSteps: 6, checkpointDir: dir }));
    expect(r.reason).toBe('nan');
    expect(r.message).toMatch(/likely cause: the learning rate 1e\+38 is too high/);
    // The first update already overflows: checkpoint-1 is refused (it used to hold 100 % non-finite values).
    expect(r.message).toMatch(/^step 1: the update made the LoRA weights or optimizer moments non-finite \(checkpoint-1: \d+ values are not finite/);
    expect(existsSync(join(dir, 'checkpoint-1'))).toBe(false);
    for (const c of (existsSync(dir) ? readdirSync(dir) : []).filter((n) => n.startsWith('checkpoint-'))) {
      for (const file of ['adapter_model.safetensors', 'optimizer.safetensors']) {
        for (const t of await allValues(join(dir, c, file))) expect(t.every(Number.isFinite)).toBe(true);
      }
    }
    if (r.lastCheckpoint) expect(r.message).toContain(r.lastCheckpoint);
  });

  it('refuses floats past f32 range (lr 1e39) and nothing to resume', async () => {
    using m = await model();
    expect(() => new Trainer(m, opts({ lr: 1e39 }))).toThrow(expect.objectContaining({ code: 'E_CONFIG', message: expect.stringMatching(/lr must be a positive number within f32's range/) }));
    await expect(new Trainer(m, opts({ checkpointDir: join(tmp, 'empty'), resumeFrom: 'latest' })).train()).rejects.toMatchObject({ code: 'E_RESUME' });
  });

  it('names the likely cause when no label is left (every label truncated away)', async () => {
    const noLabels = examples.map((e) => ({ inputIds: e.inputIds, labels: e.labels.map(() => -100) }));
    const { r } = await run(opts({ examples: noLabels }));
    expect(r.reason).toBe('nan');
    expect(r.message).toMatch(/no token of this batch has a label/);
  });
});

describe('resume', () => {
  const dir = join(tmp, 'fp');
  it('refuses settings that change the run and names them; activation checkpointing may differ', async () => {
    const first = await run(opts({ checkpointDir: dir }));
    expect(first.r.steps).toBe(4);
    const refuse = async (o: TrainerOptions, dropout: number, name: RegExp) => {
      using m = await model(dropout);
      await expect(new Trainer(m, o).train()).rejects.toMatchObject({ code: 'E_RESUME', message: expect.stringMatching(name) });
    };
    const resume = { checkpointDir: dir, resumeFrom: 'latest' as const };
    await refuse(opts(resume), 0.2, /LoRA dropout: 0\.1 in the checkpoint, 0\.2 now/);
    await refuse(opts({ ...resume, warmupSteps: 1 }), 0.1, /warmup steps: 0 in the checkpoint, 1 now/);
    await refuse(opts({ ...resume, weightDecay: 0.01 }), 0.1, /weight decay/);
    await refuse(opts({ ...resume, maxGradNorm: 0.5 }), 0.1, /max grad norm/);
    await refuse(opts({ ...resume, packing: true }), 0.1, /packing: false in the checkpoint, true now/);
    await refuse(opts({ ...resume, beta2: 0.99 }), 0.1, /Adam beta2/);
    // Other data with the same record count: one token of one record differs.
    const other = examples.map((e, i) => (i === 5 ? { inputIds: [...e.inputIds.slice(0, -1), 7], labels: [...e.labels.slice(0, -1), 7] } : e));
    await refuse(opts({ ...resume, examples: other }), 0.1, /the tokenized training examples/);
    await refuse(opts({ ...resume, settings: { responseOnly: true } }), 0.1, /responseOnly: unset in the checkpoint, true now/);
    // Another base model at the same path (one bias value changed), and the same one loaded as bf16.
    {
      using m = await model();
      const b = m.weights.layers[0].fc1B;
      const v = b.toArray() as Float32Array;
      v[0] += 0.5;
      b.copyFrom(v);
      await expect(new Trainer(m, opts(resume)).train()).rejects.toMatchObject({ code: 'E_RESUME', message: expect.stringMatching(/base model \(its weights or config\)/) });
    }
    {
      using m = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu', dtype: 'bf16' });
      m.addLora({ r: 4, alpha: 16, dropout: 0.1, targetModules: ['q_proj', 'v_proj'], seed: 1 });
      await expect(new Trainer(m, opts(resume)).train()).rejects.toMatchObject({ code: 'E_RESUME', message: expect.stringMatching(/base dtype: "f32" in the checkpoint, "bf16" now/) });
    }
    const ok = await run(opts({ ...resume, activationCheckpointing: true }));
    expect(ok.r.reason).toBe('finished');
  });

  it('falls back past a damaged newest checkpoint, saying so, and still reaches the same bits', async () => {
    const clean = join(tmp, 'clean');
    const ref = await run(opts({ checkpointDir: clean }));
    const dmg = join(tmp, 'damaged');
    cpSync(clean, dmg, { recursive: true });
    const file = join(dmg, 'checkpoint-4', 'optimizer.safetensors');
    const bytes = readFileSync(file);
    bytes[bytes.length - 3] ^= 0x10; // one bit flipped in tensor data
    writeFileSync(file, bytes);
    const explicit = await model();
    await expect(new Trainer(explicit, opts({ checkpointDir: dmg, resumeFrom: join(dmg, 'checkpoint-4') })).train()).rejects.toMatchObject({
      code: 'E_CHECKPOINT', message: expect.stringMatching(/optimizer\.safetensors: checksum mismatch/),
    });
    explicit.dispose();
    const back = await run(opts({ checkpointDir: dmg, resumeFrom: 'latest' }));
    const warning = back.events.find((e) => e.type === 'warning');
    expect(warning && warning.type === 'warning' && warning.message).toMatch(/checkpoint-4 is damaged .*checksum mismatch.*falling back to .*checkpoint-2/);
    expect(back.events.find((e) => e.type === 'start')).toMatchObject({ startStep: 2 });
    expect(back.bits).toEqual(ref.bits);
  });

  it('removes temp folders of dead runs, keeps live ones, and honours saveTotalLimit', async () => {
    const d = join(tmp, 'tidy');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    mkdirSync(join(d, `.tmp-checkpoint-3-${dead}`), { recursive: true });
    mkdirSync(join(d, `.tmp-checkpoint-3-${process.ppid}`), { recursive: true });
    const { events } = await run(opts({ checkpointDir: d, saveSteps: 1, maxSteps: 5, saveTotalLimit: 2 }));
    expect(events.some((e) => e.type === 'warning' && e.message.includes(`.tmp-checkpoint-3-${dead}`))).toBe(true);
    expect(readdirSync(d).sort()).toEqual([`.tmp-checkpoint-3-${process.ppid}`, 'checkpoint-4', 'checkpoint-5']);
    expect(existsSync(join(d, 'checkpoint-5', 'trainer_state.json'))).toBe(true);
  });
});
