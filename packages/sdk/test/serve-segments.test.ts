// The shared base under every base format: a batch mixing four adapters (ranks 4, 8, 3 and 6; an
// odd one moves the q/k/v product to its per-group form) and base rows, with the base product
// shared (the segmented LoRA op), gives each row generate()'s greedy tokens - on bf16 and NF4 bases
// too, where the composed path it replaced did not - and logits bit-identical to one fused
// product per adapter segment (shareBase off, generate()'s own call) at every step.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { AutoModelForCausalLM, LoraAdapter, sampleToken, type CausalLM } from '../src/index.js';
import { ModelDecodeEngine, type KvCache } from '../src/serve/engine.js';
import { writeTinyLlama } from './serve-llama-fixture.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const tmp = mkdtempSync(join(tmpdir(), 'lora-serve-segments-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const greedy = (l: Float32Array) => sampleToken(l, { temperature: 0, topP: 1, topK: 0 }, () => 0);

const prompts = [[2, 17, 9, 5, 42, 7], [2, 10, 11], [2, 30, 31, 32, 33], [2, 8], [2, 21, 22], [2, 40, 41, 43]];
const steps = 6;

// Every row decodes `steps` tokens in one batch; returns each row's tokens and every step's logits.
function serveAll(engine: ModelDecodeEngine, adapters: (LoraAdapter | undefined)[]): { tokens: number[][]; logits: Float32Array[] } {
  const caches: KvCache[] = prompts.map((p) => engine.allocate(p.length + steps));
  try {
    const tokens: number[][] = prompts.map(() => []);
    const logits: Float32Array[] = [];
    let out = engine.forward(prompts.map((p, i) => ({ cache: caches[i], ids: p, adapter: adapters[i], wantLogits: true })));
    for (;;) {
      out.forEach((l, i) => (logits.push(l!), tokens[i].push(greedy(l!))));
      if (tokens[0].length === steps) return { tokens, logits };
      out = engine.forward(prompts.map((_, i) => ({ cache: caches[i], ids: [tokens[i].at(-1)!], adapter: adapters[i], wantLogits: true })));
    }
  } finally {
    for (const c of caches) c.dispose();
  }
}

const models = [
  { name: 'opt (pre-LN fixture)', dir: () => join(fixtures, 'opt-tiny-preln', 'model') },
  { name: 'qwen3 (QK-norm)', dir: () => writeTinyLlama(join(tmp, 'qwen3'), 'qwen3') },
];

describe.each(models)('shared base with four adapters in one batch: $name', ({ dir }) => {
  it.each(['bf16', 'nf4', 'f32'] as const)('%s base: tokens equal generate(), logits bit-identical to the per-segment fused path', async (dtype) => {
    const m = (await AutoModelForCausalLM.fromPretrained(dir(), { device: 'cpu', dtype })) as CausalLM & { lora: LoraAdapter | undefined };
    const targets = m.modelType === 'opt' ? ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2'] : ['all-linear'];
    const made = [4, 8, 3, 6].map((r, i) => new LoraAdapter(m.loraLayout, { r, alpha: 2 * r, targetModules: targets, initLoraWeights: false, seed: 11 + i }, m.device.memory));
    const adapters = [made[0], made[1], undefined, made[2], made[3], made[0]];
    try {
      const expected: number[][] = [];
      for (const [i, p] of prompts.entries()) {
        m.lora = adapters[i];
        expected.push((await m.generate(p, { maxNewTokens: steps, stopTokens: [] })).tokens);
      }
      m.lora = undefined;
      const shared = new ModelDecodeEngine(m, { shareBase: true });
      const fused = new ModelDecodeEngine(m, { shareBase: false });
      expect(new ModelDecodeEngine(m)['shareBase']).toBe(true);
      const a = serveAll(shared, adapters);
      const b = serveAll(fused, adapters);
      expect(a.tokens).toEqual(expected);
      expect(b.tokens).toEqual(expected);
      a.logits.forEach((l, i) => expect(Buffer.from(l.buffer, l.byteOffset, l.byteLength).equals(Buffer.from(b.logits[i].buffer, b.logits[i].byteOffset, b.logits[i].byteLength))).toBe(true));
      // The adapters really change the output.
      expect(new Set(expected.map((e) => e.join())).size).toBeGreaterThan(3);
    } finally {
      m.lora = undefined;
      for (const a of made) a.dispose();
      m.dispose();
    }
  });
});
