// Issue 16: training must not starve the event loop. A 100 ms setInterval keeps ticking during
// train() with no gap longer than the interval plus one optimizer step, and an AbortSignal fired by
// a timer stops the run within one step, with a checkpoint that a resumed run continues from onto
// the uninterrupted run's adapter bits.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { buildByteLevelTokenizer, OptForCausalLM, syntheticCodeInstructions, tokenizeRecord, Trainer, type TrainerOptions } from '../src/index.js';

const modelDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'opt-tiny-preln', 'model');
const tok = buildByteLevelTokenizer();
const examples = syntheticCodeInstructions(64, 3).map((r) => tokenizeRecord(tok, r, { maxLength: 48 }));
const tmp = mkdtempSync(join(tmpdir(), 'lora-train-responsive-'));

async function model(): Promise<OptForCausalLM> {
  const m = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu' });
  m.addLora({ r: 4, alpha: 16, dropout: 0.1, targetModules: ['q_proj', 'v_proj', 'fc1'], seed: 1 });
  return m;
}

const opts = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
  examples, batchSize: 4, seq: 48, lr: 1e-2, seed: 7, gradAccum: 2, warmupSteps: 2, ...extra,
});

describe('a responsive trainer', () => {
  it('lets a 100 ms interval tick during train() with no gap over one step', async () => {
    using m = await model();
    const ticks: number[] = [];
    const stepEnds: number[] = [];
    const timer = setInterval(() => ticks.push(performance.now()), 100);
    const t0 = performance.now();
    let r;
    try {
      // Enough steps for ~1.5 s of training on this machine, whatever its speed: a time budget.
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 1500);
      r = await new Trainer(m, opts({ maxSteps: 100_000, signal: ac.signal, onEvent: (e) => e.type === 'step' && stepEnds.push(performance.now()) })).train();
    } finally {
      clearInterval(timer);
    }
    const t1 = performance.now();
    expect(r.reason).toBe('aborted');
    expect(stepEnds.length).toBeGreaterThan(3);
    const steps = stepEnds.map((t, i) => t - (i ? stepEnds[i - 1] : t0));
    const maxStep = Math.max(...steps);
    const gaps = [ticks[0] - t0, ...ticks.map((t, i) => (i ? t - ticks[i - 1] : 0)).slice(1), t1 - ticks.at(-1)!];
    // Before the fix: 0 ticks until train() returned. Now: a tick every 100 ms, late by at most
    // one step (the loop yields per micro-batch) plus 40 ms of scheduler noise on a shared 2-core CI.
    expect(ticks.length).toBeGreaterThanOrEqual(Math.floor((t1 - t0) / 100) - 2);
    expect(Math.max(...gaps)).toBeLessThan(100 + maxStep + 40);
  });

  it('stops within one step of a timer-based abort, checkpoints, and resumes to the same adapter bits', async () => {
    const full = await (async () => {
      using m = await model();
      const r = await new Trainer(m, opts({ maxSteps: 30 })).train();
      expect(r.reason).toBe('finished');
      return m.lora!.modules().flatMap((x) => [x.a.bytes(), x.b.bytes()]);
    })();
    const dir = join(tmp, 'abort');
    let abortedAt = 0;
    let stepAtAbort = -1;
    let lastStep = 0;
    {
      using m = await model();
      const ac = new AbortController();
      const stepTimes: number[] = [];
      let prev = performance.now();
      // Abort from a timer once a few steps have run (the signal is seen only if the loop yields).
      const r = await new Trainer(m, opts({
        maxSteps: 30, checkpointDir: dir, saveSteps: 1000, signal: ac.signal,
        onEvent: (e) => {
          if (e.type !== 'step') return;
          const now = performance.now();
          stepTimes.push(now - prev);
          prev = now;
          lastStep = e.step;
          if (e.step === 5) setTimeout(() => ((abortedAt = performance.now()), (stepAtAbort = lastStep), ac.abort()), 0);
        },
      })).train();
      expect(r.reason).toBe('aborted');
      // The abort lands while step 6 (or 7) runs: that step finishes, then the run stops.
      expect(stepAtAbort).toBeGreaterThanOrEqual(5);
      expect(r.steps).toBeLessThanOrEqual(stepAtAbort + 1);
      expect(r.steps).toBeLessThan(30);
      expect(r.lastCheckpoint).toBe(join(dir, `checkpoint-${r.steps}`));
      expect(abortedAt).toBeGreaterThan(0);
    }
    using m = await model();
    const resumed = await new Trainer(m, opts({ maxSteps: 30, checkpointDir: dir, saveSteps: 1000, resumeFrom: 'latest' })).train();
    expect(resumed.reason).toBe('finished');
    expect(m.lora!.modules().flatMap((x) => [x.a.bytes(), x.b.bytes()])).toEqual(full);
  });
});
