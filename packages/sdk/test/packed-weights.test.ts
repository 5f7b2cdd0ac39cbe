// bf16 base weights on the cpu backend are stored pre-packed (bf16p) by default: training and the
// merged export must be bit-identical to a model loaded with plain bf16 weights.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { ensureTinyModel, OptForCausalLM, syntheticCodeInstructions, tokenizeRecord, buildByteLevelTokenizer, type ModelBatch } from '../src/index.js';
import { mergedTensors } from '../src/model/merge.js';

const dir = mkdtempSync(join(tmpdir(), 'lora-packed-'));
const records = syntheticCodeInstructions(6, 2);

describe('pre-packed bf16 weights', () => {
  it('train and export exactly like plain bf16 weights', async () => {
    // hidden 64: q/k/v [192, 64], fc1 [128, 64], fc2 [64, 128], project_in [64, 32] are whole
    // 64-row panels; project_out [32, 64] is not and stays bf16.
    const tiny = await ensureTinyModel(join(dir, 'model'), records, { hidden: 64, ffn: 128, layers: 2, heads: 2, embedDim: 32, merges: 0, maxPositions: 128, warmupRounds: 0 });
    const tok = buildByteLevelTokenizer();
    const ex = records.slice(0, 2).map((r) => tokenizeRecord(tok, r, { maxLength: 48 }));
    const seq = Math.min(...ex.map((e) => e.inputIds.length));
    const batch: ModelBatch = {
      batch: 2,
      seq,
      inputIds: Int32Array.from(ex.flatMap((e) => e.inputIds.slice(0, seq))),
      labels: Int32Array.from(ex.flatMap((e) => e.labels.slice(0, seq))),
    };
    const run = async (packWeights: boolean) => {
      const m = await OptForCausalLM.fromPretrained(tiny.dir, { device: 'cpu', dtype: 'bf16', packWeights });
      const l = m.weights.layers[0];
      const dtypes = [l.qkvW.dtype, l.outW.dtype, l.fc1W.dtype, l.fc2W.dtype, m.weights.projIn?.dtype, m.weights.projOut?.dtype, m.weights.lmHead.dtype];
      m.addLora({ r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj', 'fc2'], seed: 1 });
      // Two steps with a manual update in between, so the second loss sees B != 0.
      const losses: number[] = [];
      for (let s = 0; s < 2; ++s) {
        losses.push(m.step(batch, { training: true, seed: 3 + s, backward: true }).loss);
        for (const mod of m.lora!.modules()) {
          const b = mod.b.toArray() as Float32Array;
          const db = mod.db.toArray() as Float32Array;
          mod.b.copyFrom(Float32Array.from(b, (v, i) => v - 0.5 * db[i]));
        }
      }
      const grads = m.lora!.modules().flatMap((mod) => [mod.da.toArray() as Float32Array, mod.db.toArray() as Float32Array]);
      const merged = mergedTensors(m);
      m.dispose();
      return { dtypes, losses, grads, merged };
    };
    const packed = await run(true);
    const plain = await run(false);
    expect(packed.dtypes).toEqual(['bf16p', 'bf16p', 'bf16p', 'bf16p', 'bf16p', 'bf16', 'bf16']);
    expect(plain.dtypes).toEqual(['bf16', 'bf16', 'bf16', 'bf16', 'bf16', 'bf16', 'bf16']);
    expect(packed.losses).toEqual(plain.losses);
    packed.grads.forEach((g, i) => expect(Array.from(g)).toEqual(Array.from(plain.grads[i])));
    expect([...packed.merged.keys()]).toEqual([...plain.merged.keys()]);
    for (const [k, t] of packed.merged) expect(Array.from(t.data as Float32Array), k).toEqual(Array.from(plain.merged.get(k)!.data as Float32Array));
  });
});
