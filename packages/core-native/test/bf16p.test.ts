// bf16p: a frozen bf16 weight packed once into the cpu GEMM's B panels. On the cpu backend every
// product with it must be bit-identical to the same product with the plain bf16 weight (the
// panels hold exactly the pairs the GEMM packs per call); the values read back in [N, K] order;
// and everything that cannot take the layout says so with a clear error.
import { describe, expect, it } from 'vitest';

import { T, arr, code, f32, i32, ops, rand } from './ops-helpers.js';

const same = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; ++i) if (!Object.is(a[i], b[i])) expect([i, a[i]]).toEqual([i, b[i]]);
};

describe('bf16p weights', () => {
  const [M, K, N] = [37, 130, 208];
  const wf = f32(rand(N * K, 2), [N, K]);
  const wb = ops.cast(wf, 'bf16');
  const wp = ops.quantize(wf, 'bf16p');

  it('hold the bf16 values, read back in [N, K] order', () => {
    expect(wp.dtype).toBe('bf16p');
    expect(wp.shape).toEqual([N, K]);
    same(wp.toArray(), wb.toArray());
    same(arr(ops.dequantize(wp)), wb.toArray());
    same(ops.quantize(wf, 'bf16p', { backend: 'ref' }).bytes(), wp.bytes());
  });

  it('give the cpu backend bit-identical products to plain bf16', () => {
    for (const xd of ['f32', 'bf16'] as const) {
      const x = f32(rand(M * K, 1), [M, K], xd);
      const dy = f32(rand(M * N, 3), [M, N], xd);
      same(arr(ops.matmulXWt(x, wp, { outDtype: 'f32' })), arr(ops.matmulXWt(x, wb, { outDtype: 'f32' })));
      same(arr(ops.matmulDYW(dy, wp, { outDtype: 'f32' })), arr(ops.matmulDYW(dy, wb, { outDtype: 'f32' })));
    }
    // Fused LoRA on three groups of 64 rows (the grouped GEMM), forward and backward.
    const [G, Ng, r] = [3, 64, 8];
    const wl = f32(rand(G * Ng * K, 4), [G * Ng, K]);
    const [lb, lp] = [ops.cast(wl, 'bf16'), ops.quantize(wl, 'bf16p')];
    const x = f32(rand(M * K, 5), [M, K], 'bf16');
    const a = f32(rand(G * r * K, 6), [G * r, K]);
    const bm = f32(rand(G * Ng * r, 7), [G * Ng, r]);
    const dy = f32(rand(M * G * Ng, 8), [M, G * Ng], 'bf16');
    const run = (w: typeof lb) => {
      const o = { scale: 2, groups: G, dropout: 0.1, seed: 3 };
      const { y, xa } = ops.loraForward(x, w, a, bm, { ...o, outDtype: 'f32' });
      const da = T.fromArray(new Float32Array(G * r * K), [G * r, K]);
      const db = T.fromArray(new Float32Array(G * Ng * r), [G * Ng, r]);
      const { dx } = ops.loraBackward(dy, x, w, a, bm, xa, { ...o, da, db, dxDtype: 'f32' });
      return [arr(y), arr(dx!), arr(da), arr(db)];
    };
    const [p, q] = [run(lp), run(lb)];
    p.forEach((v, i) => same(v, q[i]));
    // Cross-entropy over vocabulary chunks of whole panels.
    const h = f32(rand(M * K, 9), [M, K]);
    const tg = i32(Array.from({ length: M }, (_, m) => (m * 7) % N), [M]);
    const ce = (w: typeof lb) => ops.crossEntropy(h, w, tg, { chunk: 64 });
    expect(ce(wp).loss).toBe(ce(wb).loss);
  });

  it('are made only by quantize, with whole 16-row groups and an even row length', () => {
    expect(code(() => T.empty('bf16p', [16, 2]))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => T.fromArray(new Float32Array(32), [16, 2], 'bf16p'))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.quantize(f32(rand(15 * 8, 1), [15, 8]), 'bf16p'))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.quantize(f32(rand(16 * 7, 1), [16, 7]), 'bf16p'))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.quantize(wb, 'bf16p'))).toBe('ERR_LORA_DTYPE'); // packs from f32
  });

  it('are refused where the layout does not fit, with the reason', () => {
    // Not an activation, not reshaped or narrowed (the layout is per panel).
    expect(code(() => ops.matmulXWt(wp, wb, { outDtype: 'f32' }))).toBe('ERR_LORA_DTYPE');
    expect(code(() => wp.reshape([K, N]))).toBe('ERR_LORA_UNSUPPORTED');
    // Groups and vocabulary chunks split it at whole 64-row panels only.
    const w48 = ops.quantize(f32(rand(96 * 64, 1), [96, 64]), 'bf16p');
    const x = f32(rand(4 * 64, 2), [4, 64]);
    expect(code(() => ops.loraForward(x, w48, f32(rand(2 * 64, 3), [2, 64]), f32(rand(96, 4), [96, 1]), { scale: 1, groups: 2 }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.crossEntropy(x, w48, i32([0, 1, 2, 3], [4]), { chunk: 48 }))).toBe('ERR_LORA_INVALID_ARG');
    // The CUDA kernels (and so the emulator) take plain bf16: an honest "not supported".
    const s = ops.opSupports('emu', 'matmul_xwt', ['bf16', 'bf16p', 'f32']);
    expect(s).toMatchObject({ ok: false, reason: expect.stringMatching(/bf16p/) });
    expect(code(() => ops.matmulXWt(f32(rand(M * K, 1), [M, K]), wp, { backend: 'emu' }))).toBe('ERR_LORA_UNSUPPORTED');
  });
});
