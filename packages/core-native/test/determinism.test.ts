// The cpu backend's reductions must not depend on which pool thread ran which block: the
// small-rank LoRA backward sums dA and dB from per-index partials, and repeated calls (and
// so repeated training runs) must give the same bits.
import { describe, expect, it } from 'vitest';

import { T, f32, ops, rand } from './ops-helpers.js';

describe('cpu reductions are deterministic', () => {
  it('the fused LoRA backward gives the same dX, dA, dB bits on every call', () => {
    // Many row blocks (the dX GEMM's hook and the hook-free path), bf16 activations, dropout.
    const [M, K, N, r, G] = [3000, 128, 64, 8, 3];
    const x = f32(rand(M * K, 1), [M, K], 'bf16');
    const w = f32(rand(G * N * K, 2), [G * N, K], 'bf16');
    const a = f32(rand(G * r * K, 3), [G * r, K]);
    const bm = f32(rand(G * N * r, 4), [G * N, r]);
    const dy = f32(rand(M * G * N, 5), [M, G * N], 'bf16');
    const o = { scale: 2, groups: G, dropout: 0.1, seed: 7 };
    const { xa } = ops.loraForward(x, w, a, bm, { ...o, outDtype: 'f32' });
    for (const withDx of [true, false]) {
      const runs = Array.from({ length: 10 }, () => {
        const da = T.fromArray(new Float32Array(G * r * K), [G * r, K]);
        const db = T.fromArray(new Float32Array(G * N * r), [G * N, r]);
        const { dx } = ops.loraBackward(dy, x, w, a, bm, xa, { ...o, da, db, dx: withDx ? undefined : false, dxDtype: 'f32' });
        return [da.bytes(), db.bytes(), ...(dx ? [dx.bytes()] : [])];
      });
      for (const run of runs.slice(1)) run.forEach((bytes, i) => expect(Buffer.compare(Buffer.from(bytes), Buffer.from(runs[0][i])), `${withDx ? 'with' : 'without'} dX, output ${i}`).toBe(0));
    }
  });
});
