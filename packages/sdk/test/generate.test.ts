// KV-cached generation agrees with the full (training) forward: at every generated position the
// cached path's greedy choice is the full forward's argmax, on both layouts with an adapter.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { OptForCausalLM, sampleToken } from '../src/index.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

describe.each(['opt-tiny-preln', 'opt-tiny-postln'])('generation on %s', (name) => {
  it('matches the full forward token by token (greedy)', async () => {
    using m = await OptForCausalLM.fromPretrained(join(fixtures, name, 'model'), { device: 'cpu' });
    await m.loadAdapter(join(fixtures, name, 'adapter'));
    const prompt = [2, 17, 99, 5, 42, 7];
    const r = m.generate(prompt, { maxNewTokens: 10, stopTokens: [] });
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
    const a = m.generate([2, 10, 11], { maxNewTokens: 12, temperature: 0.8, topP: 0.9, seed: 5 });
    const b = m.generate([2, 10, 11], { maxNewTokens: 12, temperature: 0.8, topP: 0.9, seed: 5 });
    expect(a.tokens).toEqual(b.tokens);
    const first = m.generate([2, 10, 11], { maxNewTokens: 12 }).tokens[0];
    const stopped = m.generate([2, 10, 11], { maxNewTokens: 12, stopTokens: [first] });
    expect(stopped.tokens).toEqual([first]);
    expect(stopped.stoppedBy).toBe('stop-token');
    expect(() => m.generate([], {})).toThrow(/prompt is empty/);
    expect(() => m.generate([2, 100000], {})).toThrow(/outside the vocabulary/);
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
