// The serve engine's ragged batches (rows of different adapters, prefill chunks beside decode rows)
// give each row exactly what generate() gives that row alone: greedy tokens equal, on both layouts,
// with the shared base product (S-LoRA) and with one fused product per adapter segment.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { LoraAdapter, LORA_TARGETS, OptForCausalLM } from '../src/index.js';
import { OptDecodeEngine, type DecodeEngine } from '../src/serve/engine.js';
import { decodeRaggedBatches, generateAlonePerRow } from './serve-engine-greedy.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

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
      const expected = await generateAlonePerRow(m, prompts, adapters, steps);
      m.lora = loaded;
      const engine: DecodeEngine = new OptDecodeEngine(m, { shareBase });
      // Row 2 prefills in chunks of 4 while the others already decode.
      expect(decodeRaggedBatches(engine, prompts, adapters, steps)).toEqual(expected);
      // The adapters really differ from the base and from each other on these prompts.
      expect(expected[0]).not.toEqual(expected[1]);
    } finally {
      other.dispose();
    }
  });
});
