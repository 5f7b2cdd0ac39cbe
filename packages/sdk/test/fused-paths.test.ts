// The model's fused kernels (fc1 + ReLU, fc2's input grad with the ReLU mask, out_proj / fc2 with
// their dropout and residual add, the O-free attention backward) run only where a linear has no
// LoRA branch; with one, the separate ops run instead. LoRA's B starts at zero, so before any
// update every choice of target modules must give the same loss, bit for bit, on both layouts and
// with an f32 or bf16 base - and the backward must run (and give finite grads) for each choice.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { buildByteLevelTokenizer, OptForCausalLM, syntheticCodeInstructions, tokenizeRecord, type ModelBatch } from '../src/index.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const tok = buildByteLevelTokenizer();
const ex = syntheticCodeInstructions(4, 5).map((r) => tokenizeRecord(tok, r, { maxLength: 40 }));
const seq = Math.min(...ex.map((e) => e.inputIds.length));
const batch: ModelBatch = {
  batch: 2,
  seq,
  inputIds: Int32Array.from(ex.slice(0, 2).flatMap((e) => e.inputIds.slice(0, seq))),
  labels: Int32Array.from(ex.slice(0, 2).flatMap((e) => e.labels.slice(0, seq))),
};
const targetSets = [
  ['q_proj', 'k_proj', 'v_proj'],
  ['fc1'],
  ['fc2'],
  ['out_proj'],
  ['fc1', 'fc2', 'out_proj'],
  ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2'],
];

describe('fused and separate paths agree', () => {
  for (const layout of ['opt-tiny-preln', 'opt-tiny-postln']) {
    for (const dtype of ['f32', 'bf16'] as const) {
      it(`${layout} ${dtype}: the same first loss for every target set, finite grads`, async () => {
        const losses: number[] = [];
        for (const targets of targetSets) {
          using m = await OptForCausalLM.fromPretrained(join(fixtures, layout, 'model'), { device: 'cpu', dtype });
          m.addLora({ r: 4, alpha: 8, dropout: 0.1, targetModules: targets, seed: 1 });
          const r = m.step(batch, { training: true, seed: 3, backward: true });
          losses.push(r.loss);
          for (const mod of m.lora!.modules()) {
            for (const g of [mod.da, mod.db]) expect((g.toArray() as Float32Array).every(Number.isFinite), `${targets} grads`).toBe(true);
          }
        }
        console.log(`${layout} ${dtype}: first losses ${losses.map((l) => l.toFixed(6)).join(', ')}`);
        expect(Number.isFinite(losses[0])).toBe(true);
        for (const l of losses) expect(l).toBe(losses[0]);
      });
    }
  }
});
