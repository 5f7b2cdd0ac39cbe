// The serve engine on the Llama-shaped families: ragged batches (rows of different adapters, a
// chunked prefill beside decode rows, per-row rotary positions and GQA caches) give each row exactly
// what generate() gives that row alone - greedy tokens equal - with the shared base product (S-LoRA),
// with one fused product per adapter segment, and under bf16 autocast (the engine's default there).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { native } from '@lora/core-native';
import { afterAll, describe, expect, it } from 'vitest';

import { LlamaForCausalLM, LoraAdapter } from '../src/index.js';
import { ModelDecodeEngine, type DecodeEngine } from '../src/serve/engine.js';
import { decodeRaggedBatches, generateAlonePerRow } from './serve-engine-greedy.js';
import { writeTinyLlama } from './serve-llama-fixture.js';

const tmp = mkdtempSync(join(tmpdir(), 'lora-serve-llama-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// cpu: f32 with and without the shared base product, bf16 with the engine's default; the CUDA
// emulator (the CUDA backend's kernels on the host): f32 with the shared base product.
const emu = native().backends().some((b) => b.name === 'emu' && b.usable);
const CASES = [
  { device: 'cpu', dtype: 'f32', shareBase: true },
  { device: 'cpu', dtype: 'f32', shareBase: false },
  { device: 'cpu', dtype: 'bf16', shareBase: undefined },
  ...(emu ? [{ device: 'emu', dtype: 'f32', shareBase: true }] : []),
] as const;

it('refuses a model that is not on the shared decoder base with E_CONFIG', () => {
  expect(() => new ModelDecodeEngine({ modelType: 'gpt2' } as unknown as LlamaForCausalLM)).toThrow(expect.objectContaining({ code: 'E_CONFIG', message: expect.stringContaining("'gpt2'") }));
});

describe.each(['llama', 'qwen2', 'qwen3'])('serve engine on a tiny %s', (family) => {
  const dir = writeTinyLlama(join(tmp, family), family);
  it.each(CASES)('batched rows with different adapters and chunked prefill equal generate() per row ($device, $dtype, shareBase $shareBase)', async ({ device, dtype, shareBase }) => {
    using m = await LlamaForCausalLM.fromPretrained(dir, { device, dtype });
    // Random A and B on every linear (all seven targets; gate|up is one module of two groups).
    const make = (seed: number) => new LoraAdapter(m.loraLayout, { r: 4, alpha: 16, targetModules: ['all-linear'], initLoraWeights: false, seed }, m.device.memory);
    const one = make(3);
    const two = make(5);
    try {
      const prompts = [[2, 17, 9, 5, 42, 7], [2, 10, 11], [2, 30, 31, 32, 33, 34, 35, 36, 37], [2, 8]];
      const adapters = [one, two, undefined, one];
      const steps = 8;
      const expected = await generateAlonePerRow(m, prompts, adapters, steps);
      m.lora = undefined;
      const engine: DecodeEngine = new ModelDecodeEngine(m, { shareBase });
      expect(engine.kvBytes(10)).toBe(m.config.numHiddenLayers * 2 * 10 * m.config.numKeyValueHeads * m.config.headDim * 4);
      // Row 2 prefills in chunks of 4 while the others already decode.
      expect(decodeRaggedBatches(engine, prompts, adapters, steps)).toEqual(expected);
      // The adapters really change the output (from the base and from each other).
      expect(expected[0]).not.toEqual(expected[1]);
      expect(new Set(expected.map((e) => e.join())).size).toBeGreaterThan(2);
    } finally {
      m.lora = undefined;
      one.dispose();
      two.dispose();
    }
  });
});
