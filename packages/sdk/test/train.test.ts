// End to end on the tiny pre-LN fixture model: training lowers the loss, is reproducible for a seed,
// and a run stopped mid-way then resumed from its checkpoint matches the uninterrupted run.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import {
  buildByteLevelTokenizer, ensureTinyModel, exportMerged, OptForCausalLM, syntheticCodeInstructions, tokenizeRecord, Trainer,
  type ModelBatch, type TrainerOptions,
} from '../src/index.js';

const modelDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'opt-tiny-preln', 'model');
const tok = buildByteLevelTokenizer();
const examples = syntheticCodeInstructions(64, 3).map((r) => tokenizeRecord(tok, r, { maxLength: 48 }));
const tmp = mkdtempSync(join(tmpdir(), 'lora-train-'));

async function model(): Promise<OptForCausalLM> {
  const m = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu' });
  m.addLora({ r: 4, alpha: 16, dropout: 0.1, targetModules: ['q_proj', 'k_proj', 'v_proj', 'fc1'], seed: 1 });
  return m;
}

const opts = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
  examples, batchSize: 4, seq: 48, maxSteps: 24, lr: 1e-2, seed: 7, loggingSteps: 4, gradAccum: 2, warmupSteps: 2, ...extra,
});

describe('training', () => {
  it('lowers the loss and gives the same curve twice for one seed', async () => {
    const curves: number[][] = [];
    for (let run = 0; run < 2; run++) {
      using m = await model();
      const r = await new Trainer(m, opts()).train();
      expect(r.reason).toBe('finished');
      curves.push(r.lossHistory);
    }
    const [a, b] = curves;
    expect(a.length).toBe(24);
    expect(b).toEqual(a);
    const head = (a[0] + a[1] + a[2]) / 3;
    const tail = (a[21] + a[22] + a[23]) / 3;
    expect(tail).toBeLessThan(head - 0.3);
  });

  it('resumes from a checkpoint onto the same loss curve', async () => {
    const full = await (async () => {
      using m = await model();
      return (await new Trainer(m, opts()).train()).lossHistory;
    })();
    const dir = join(tmp, 'resume');
    const ac = new AbortController();
    {
      using m = await model();
      const r = await new Trainer(m, opts({ checkpointDir: dir, saveSteps: 10, signal: ac.signal, onEvent: (e) => e.type === 'checkpoint' && e.step === 10 && ac.abort() })).train();
      expect(r.reason).toBe('aborted');
      expect(r.steps).toBe(10);
    }
    using m = await model();
    const resumed = await new Trainer(m, opts({ checkpointDir: dir, saveSteps: 10, resumeFrom: 'latest' })).train();
    expect(resumed.lossHistory.length).toBe(24);
    expect(resumed.lossHistory).toEqual(full);
  });

  it('stops on a NaN loss with a clear message and keeps the last good checkpoint', async () => {
    using m = await model();
    const events: string[] = [];
    const r = await new Trainer(m, opts({ lr: 1e30, maxSteps: 6, checkpointDir: join(tmp, 'nan'), saveSteps: 1, maxGradNorm: 0, onEvent: (e) => events.push(e.type) })).train();
    expect(r.reason).toBe('nan');
    expect(r.message).toMatch(/stopped without applying the update/);
    expect(events).toContain('nan');
    if (r.lastCheckpoint) expect(r.lastCheckpoint).toMatch(/checkpoint-\d+$/);
  });
});

describe('activation checkpointing', () => {
  it('gives the same loss and LoRA grads as keeping every activation, with dropout on', async () => {
    const ex = examples.slice(0, 2);
    const seq = Math.max(...ex.map((e) => e.inputIds.length));
    const ids = new Int32Array(2 * seq).fill(1);
    const labels = new Int32Array(2 * seq).fill(-100);
    ex.forEach((e, b) => e.inputIds.forEach((id, t) => ((ids[b * seq + t] = id), (labels[b * seq + t] = e.labels[t]))));
    const grads: Uint8Array[][] = [];
    const losses: number[] = [];
    for (const checkpointing of [false, true]) {
      using m = await model();
      m.lora!.zeroGrad(m.kernels);
      const r = m.step({ batch: 2, seq, inputIds: ids, labels }, { training: true, seed: 11, backward: true, checkpointing });
      losses.push(r.loss);
      grads.push(m.lora!.modules().flatMap((x) => [x.da.bytes(), x.db.bytes()]));
    }
    expect(losses[1]).toBe(losses[0]);
    expect(grads[1]).toEqual(grads[0]);
  });
});

describe('adapters', () => {
  const batch = (): ModelBatch => {
    const ex = examples[0];
    return { batch: 1, seq: ex.inputIds.length, inputIds: Int32Array.from(ex.inputIds), labels: Int32Array.from(ex.labels) };
  };

  it('round-trips through PEFT files bit-exactly', async () => {
    using m = await model();
    await new Trainer(m, opts({ maxSteps: 3 })).train();
    const dir = join(tmp, 'adapter');
    await m.saveAdapter(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 16, target_modules: ['fc1', 'k_proj', 'q_proj', 'v_proj'] });
    const before = m.lora!.modules().map((x) => [x.a.bytes(), x.b.bytes()]);
    using m2 = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu' });
    await m2.loadAdapter(dir);
    const after = m2.lora!.modules().map((x) => [x.a.bytes(), x.b.bytes()]);
    expect(after).toEqual(before);
  });

  it('refuses an adapter for another model with a clear error', async () => {
    const small = await ensureTinyModel(join(tmp, 'small'), syntheticCodeInstructions(8, 1), { hidden: 16, ffn: 32, layers: 1, heads: 2, embedDim: 8, merges: 0, maxPositions: 64, warmupRounds: 0 });
    const dir = join(tmp, 'small-adapter');
    {
      using s = await OptForCausalLM.fromPretrained(small.dir, { device: 'cpu' });
      s.addLora({ r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] });
      await s.saveAdapter(dir);
    }
    using m = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu' });
    await expect(m.loadAdapter(dir)).rejects.toThrow(/has shape \[4, 16\], this model needs \[4, 32\] \(an adapter for another model\?\)/);
    expect(m.lora).toBeUndefined();
  });

  it('exports a merged model whose logits match base + adapter', async () => {
    using m = await model();
    await new Trainer(m, opts({ maxSteps: 3 })).train();
    const b = batch();
    const V = m.config.vocabSize;
    const want = new Float32Array(b.batch * b.seq * V);
    m.step(b, { logits: want });
    const dir = join(tmp, 'merged');
    await exportMerged(m, dir);
    using merged = await OptForCausalLM.fromPretrained(dir, { device: 'cpu' });
    const got = new Float32Array(want.length);
    merged.step(b, { logits: got });
    let maxErr = 0;
    let maxRef = 0;
    for (let i = 0; i < got.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
      maxRef = Math.max(maxRef, Math.abs(want[i]));
    }
    // f32 re-association of W·x + s·B(A·x) vs (W + s·BA)·x: ~1e-6 relative.
    expect(maxErr / maxRef).toBeLessThan(1e-4);
  });
});
