// The serve engine's ragged batches (rows of different adapters, prefill chunks beside decode rows)
// give each row exactly what generate() gives that row alone: greedy tokens equal, on both layouts,
// with the shared base product (S-LoRA) and with one fused product per adapter segment.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { LoraAdapter, LORA_TARGETS, OptForCausalLM, sampleToken } from '../src/index.js';
import { OptDecodeEngine, type KvCache } from '../src/serve/engine.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const greedy = (l: Float32Array) => sampleToken(l, { temperature: 0, topP: 1, topK: 0 }, () => 0);

// f32 with and without the shared base product; bf16 (autocast) with the engine's default for it.
const CASES = [
  { dtype: 'f32', shareBase: true },
  { dtype: 'f32', shareBase: false },
  { dtype: 'bf16', shareBase: undefined },
] as const;

describe.each(['opt-tiny-preln', 'opt-tiny-postln'])('serve engine on %s', (name) => {
  it.each(CASES)('batched rows with different adapters and chunked prefill equal generate() per row ($dtype, shareBase $shareBase)', async ({ dtype, shareBase }) => {
    using m = await OptForCausalLM.fromPretrained(join(fixtures, name, 'model'), { device: 'cpu', dtype });
    const other = new LoraAdapter(m.config, { r: 4, alpha: 8, targetModules: [...LORA_TARGETS], initLoraWeights: false, seed: 3 }, m.device.memory);
    const loaded = await m.loadAdapter(join(fixtures, name, 'adapter'));
    try {
      const prompts = [[2, 17, 99, 5, 42, 7], [2, 10, 11], [2, 30, 31, 32, 33, 34, 35, 36, 37], [2, 8]];
      const adapters = [loaded, other, undefined, loaded];
      const steps = 8;
      // Reference: generate() alone per row, with that row's adapter on the model.
      const expected: number[][] = [];
      for (const [i, p] of prompts.entries()) {
        m.lora = adapters[i];
        expected.push((await m.generate(p, { maxNewTokens: steps, stopTokens: [] })).tokens);
      }
      m.lora = loaded;
      const engine = new OptDecodeEngine(m, { shareBase });
      const caches: KvCache[] = prompts.map((p) => engine.allocate(p.length + steps));
      try {
        const got: number[][] = prompts.map(() => []);
        // Row 2 prefills in chunks of 4 while the others already decode.
        const first = engine.forward([0, 1, 3].map((i) => ({ cache: caches[i], ids: prompts[i], adapter: adapters[i], wantLogits: true })));
        [0, 1, 3].forEach((i, j) => got[i].push(greedy(first[j]!)));
        let fed = 0;
        while (got.some((g) => g.length < steps)) {
          const rows = [];
          const who: number[] = [];
          for (const i of [0, 1, 3]) if (got[i].length < steps) (rows.push({ cache: caches[i], ids: [got[i].at(-1)!], adapter: adapters[i], wantLogits: true }), who.push(i));
          if (fed < prompts[2].length) {
            const chunk = prompts[2].slice(fed, fed + 4);
            fed += chunk.length;
            rows.unshift({ cache: caches[2], ids: chunk, adapter: undefined, wantLogits: fed === prompts[2].length });
            who.unshift(2);
          } else if (got[2].length < steps) {
            rows.push({ cache: caches[2], ids: [got[2].at(-1)!], adapter: undefined, wantLogits: true });
            who.push(2);
          }
          const logits = engine.forward(rows);
          who.forEach((i, j) => logits[j] && got[i].push(greedy(logits[j]!)));
        }
        expect(got).toEqual(expected);
        // The adapters really differ from the base and from each other on these prompts.
        expect(expected[0]).not.toEqual(expected[1]);
      } finally {
        for (const c of caches) c.dispose();
        engine.dispose();
      }
    } finally {
      other.dispose();
    }
  });
});
