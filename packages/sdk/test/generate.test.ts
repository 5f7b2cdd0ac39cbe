// KV-cached generation agrees with the full (training) forward: at every generated position the
// cached path's greedy choice is the full forward's argmax, on both layouts with an adapter. It
// yields to the event loop between tokens, stops on an AbortSignal, and refuses non-finite logits.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { native } from '@lora/core-native';
import { describe, expect, it } from 'vitest';

import { AutoModelForCausalLM, OptForCausalLM, sampleToken } from '../src/index.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

describe.each(['opt-tiny-preln', 'opt-tiny-postln'])('generation on %s', (name) => {
  it('matches the full forward token by token (greedy)', async () => {
    using m = await OptForCausalLM.fromPretrained(join(fixtures, name, 'model'), { device: 'cpu' });
    await m.loadAdapter(join(fixtures, name, 'adapter'));
    const prompt = [2, 17, 99, 5, 42, 7];
    const r = await m.generate(prompt, { maxNewTokens: 10, stopTokens: [] });
    expect(r.tokens.length).toBe(10);
    expect(r.stoppedBy).toBe('max-new-tokens');
    expect(r.timeToFirstTokenMs).toBeGreaterThan(0);
    const seq = [...prompt, ...r.tokens.slice(0, -1)];
    const V = m.config.vocabSize;
    const logits = new Float32Array(seq.length * V);
    m.step({ batch: 1, seq: seq.length, inputIds: Int32Array.from(seq) }, { logits });
    for (let i = 0; i < r.tokens.length; i++) {
      const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
      let best = 0;
      for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
      expect(r.tokens[i]).toBe(best);
    }
  });

  it('stops at a stop token and is reproducible when sampling with a seed', async () => {
    using m = await OptForCausalLM.fromPretrained(join(fixtures, name, 'model'), { device: 'cpu' });
    const a = await m.generate([2, 10, 11], { maxNewTokens: 12, temperature: 0.8, topP: 0.9, seed: 5 });
    const b = await m.generate([2, 10, 11], { maxNewTokens: 12, temperature: 0.8, topP: 0.9, seed: 5 });
    expect(a.tokens).toEqual(b.tokens);
    const first = (await m.generate([2, 10, 11], { maxNewTokens: 12 })).tokens[0];
    const stopped = await m.generate([2, 10, 11], { maxNewTokens: 12, stopTokens: [first] });
    expect(stopped.tokens).toEqual([first]);
    expect(stopped.stoppedBy).toBe('stop-token');
    await expect(m.generate([], {})).rejects.toThrow(/prompt is empty/);
    await expect(m.generate([2, 100000], {})).rejects.toThrow(/outside the vocabulary/);
  });
});

describe('generation on the CUDA emulator', () => {
  // Decoding is the ordinary attention op with a query offset, so every backend that trains generates.
  it.skipIf(!native().backends().some((b) => b.name === 'emu' && b.usable))('gives the cpu backend\'s greedy tokens', async () => {
    for (const name of ['opt-tiny-preln', 'opt-tiny-postln']) {
      using cpu = await OptForCausalLM.fromPretrained(join(fixtures, name, 'model'), { device: 'cpu' });
      using emu = await OptForCausalLM.fromPretrained(join(fixtures, name, 'model'), { device: 'emu' });
      await cpu.loadAdapter(join(fixtures, name, 'adapter'));
      await emu.loadAdapter(join(fixtures, name, 'adapter'));
      const want = await cpu.generate([2, 17, 99, 5, 42, 7], { maxNewTokens: 6, stopTokens: [] });
      const got = await emu.generate([2, 17, 99, 5, 42, 7], { maxNewTokens: 6, stopTokens: [] });
      expect(got.tokens).toEqual(want.tokens);
    }
  });
});

describe('generation and the event loop', () => {
  const model = join(fixtures, 'opt-tiny-preln', 'model');

  it('lets timers run between tokens', async () => {
    using m = await OptForCausalLM.fromPretrained(model, { device: 'cpu' });
    // A decode loop that never yields would let this interval fire 0 times before it resolves.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    try {
      await m.generate([2, 10, 11], { maxNewTokens: 20, stopTokens: [] });
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(2);
  });

  it('keeps a 100 ms interval ticking with no gap much longer than one decode step (issue 16)', async () => {
    using m = await OptForCausalLM.fromPretrained(model, { device: 'cpu' });
    // Longest gap between interval ticks vs the longest time between two tokens (one decode step,
    // prefill included for the first). A loop that never yields would show one gap as long as the
    // whole generation. 100 ms of slack: the interval's own period, plus timer jitter on a loaded host.
    // The fixture holds 64 positions, so one call is ~60 tokens (~35 ms): calls run back to back for
    // 700 ms, each call's start stamped as a step boundary (its first gap is the prefill).
    const ticks: number[] = [];
    const tokens: number[] = [];
    const timer = setInterval(() => ticks.push(performance.now()), 100);
    const t0 = performance.now();
    try {
      while (performance.now() - t0 < 700) {
        tokens.push(performance.now());
        await m.generate([2, 10, 11], { maxNewTokens: 50, stopTokens: [], onToken: () => void tokens.push(performance.now()) });
      }
    } finally {
      clearInterval(timer);
    }
    const tEnd = performance.now();
    const stamps = [t0, ...ticks, tEnd];
    const maxGap = Math.max(...stamps.slice(1).map((t, i) => t - stamps[i]));
    const steps = [t0, ...tokens];
    const maxStep = Math.max(...steps.slice(1).map((t, i) => t - steps[i]));
    console.log(`[generate] ${tokens.length} tokens in ${(tEnd - t0).toFixed(0)} ms, ${ticks.length} ticks, longest tick gap ${maxGap.toFixed(1)} ms, longest step ${maxStep.toFixed(1)} ms`);
    expect(ticks.length).toBeGreaterThan(0);
    expect(maxGap).toBeLessThan(maxStep + 100 + 50);
  });

  it('stops when its AbortSignal aborts, rejecting with the reason', async () => {
    using m = await OptForCausalLM.fromPretrained(model, { device: 'cpu' });
    const ac = new AbortController();
    const seen: number[] = [];
    const reason = new Error('user stopped it');
    const run = m.generate([2, 10, 11], { maxNewTokens: 20, stopTokens: [], signal: ac.signal, onToken: (id) => void (seen.push(id) === 3 && ac.abort(reason)) });
    await expect(run).rejects.toBe(reason);
    expect(seen.length).toBe(3);
    await expect(m.generate([2, 10, 11], { signal: ac.signal })).rejects.toBe(reason);
  });

  it('refuses non-finite logits with E_NON_FINITE', async () => {
    using m = await OptForCausalLM.fromPretrained(model, { device: 'cpu' });
    const lora = m.addLora({ r: 2, alpha: 2, targetModules: ['fc2'], initLoraWeights: false });
    const b = lora.layers[1].fc2!.b;
    b.copyFrom(new Float32Array(b.numel).fill(Number.NaN));
    await expect(m.generate([2, 10, 11], { maxNewTokens: 4 })).rejects.toMatchObject({ code: 'E_NON_FINITE', message: /non-finite/ });
  });
});

describe('AutoModelForCausalLM', () => {
  it('loads an OPT folder as OptForCausalLM and refuses an unknown model_type naming the supported ones', async () => {
    using m = await AutoModelForCausalLM.fromPretrained(join(fixtures, 'opt-tiny-preln', 'model'), { device: 'cpu' });
    expect(m).toBeInstanceOf(OptForCausalLM);
    expect(m.modelType).toBe('opt');
    const dir = mkdtempSync(join(tmpdir(), 'lora-auto-'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt_neox' }));
    await expect(AutoModelForCausalLM.fromPretrained(dir)).rejects.toMatchObject({ code: 'E_CONFIG', message: /model_type "gpt_neox" is not supported; supported model types: opt/ });
  });
});

describe('sampling', () => {
  it('is greedy at temperature 0 and respects top-k / top-p', () => {
    const logits = new Float32Array([0, 5, 1, 4]);
    expect(sampleToken(logits, { temperature: 0, topP: 1, topK: 0 }, () => 0.5)).toBe(1);
    for (let i = 0; i < 50; i++) {
      const u = i / 50;
      expect([1, 3]).toContain(sampleToken(logits, { temperature: 1, topP: 1, topK: 2 }, () => u));
      expect(sampleToken(logits, { temperature: 1, topP: 0.5, topK: 0 }, () => u)).toBe(1);
    }
  });
});
