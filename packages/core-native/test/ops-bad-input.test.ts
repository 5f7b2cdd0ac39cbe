// Bad input to the op bindings: every mistake is a JS error with a stable code naming the
// argument, never a crash; NaN/Inf in inputs propagate to the outputs on every backend.
import { describe, expect, it } from 'vitest';

import { A, T, arr, code, f32, i32, ops, rand, unpackBits, weight } from './ops-helpers.js';

const backends = ['ref', 'cpu'] as const;

describe('op bindings reject bad input with clear errors', () => {
  const x = f32(rand(4 * 8, 1), [4, 8]);
  const w = f32(rand(3 * 8, 2), [3, 8]);

  it('mismatched shapes', () => {
    expect(code(() => ops.matmulXWt(x, f32(rand(3 * 7, 3), [3, 7])))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.matmulXWt(x, w, { out: f32(new Float32Array(4 * 4), [4, 4]) }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.matmulXWt(x, w, { bias: f32(new Float32Array(4), [4]) }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.matmulDW(f32(rand(5 * 3, 4), [5, 3]), x, f32(new Float32Array(24), [3, 8])))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.loraForward(x, w, f32(rand(2 * 7, 5), [2, 7]), f32(rand(3 * 2, 6), [3, 2]), { scale: 1 }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.loraForward(x, w, f32(rand(2 * 8, 5), [2, 8]), f32(rand(3 * 2, 6), [3, 2]), { scale: 1, groups: 2 }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.attention(f32(rand(24, 7), [1, 4, 6]), f32(rand(24, 7), [1, 4, 6]), f32(rand(20, 7), [1, 4, 5]), { heads: 2 }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.attention(f32(rand(24, 7), [1, 4, 6]), f32(rand(24, 7), [1, 4, 6]), f32(rand(24, 7), [1, 4, 6]), { heads: 4 }))).toBe('ERR_LORA_SHAPE');
    // q, k, v: all f32 or all bf16; o and the grads f32.
    const qkvOf = (dt: 'f32' | 'bf16' | 'f16') => f32(rand(24, 7), [1, 4, 6], dt);
    expect(code(() => ops.attention(qkvOf('bf16'), qkvOf('f32'), qkvOf('bf16'), { heads: 2 }))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.attention(qkvOf('f16'), qkvOf('f16'), qkvOf('f16'), { heads: 2 }))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.attention(qkvOf('bf16'), qkvOf('bf16'), qkvOf('bf16'), { heads: 2, out: qkvOf('bf16') }))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.attention(qkvOf('bf16'), qkvOf('bf16'), qkvOf('bf16'), { heads: 2 }))).toBe('NO_ERROR');
    {
      const [q, k, v] = [qkvOf('bf16'), qkvOf('bf16'), qkvOf('bf16')];
      const f = ops.attention(q, k, v, { heads: 2 });
      expect(code(() => ops.attentionBackward(f.o, q, k, qkvOf('f32'), f.o, f.lse, { heads: 2 }))).toBe('ERR_LORA_DTYPE');
      expect(code(() => ops.attentionBackward(f.o, q, k, v, f.o, f.lse, { heads: 2, dq: qkvOf('bf16') }))).toBe('ERR_LORA_DTYPE');
      expect(code(() => ops.attentionBackward(qkvOf('bf16'), q, k, v, f.o, f.lse, { heads: 2 }))).toBe('ERR_LORA_DTYPE');
      expect(code(() => ops.attentionBackward(f.o, q, k, v, f.o, f.lse, { heads: 2 }))).toBe('NO_ERROR');
    }
    expect(code(() => ops.add(f32(rand(4, 8), [4]), f32(rand(5, 8), [5])))).toBe('ERR_LORA_SHAPE');
    // RMSNorm / RoPE / SwiGLU: widths that do not divide a row, odd head dims, short tables, bf16 rows.
    {
      const x6 = f32(rand(12, 11), [2, 6]);
      expect(code(() => ops.rmsNorm(x6, { w: f32(rand(4, 1), [4]) }))).toBe('ERR_LORA_SHAPE');  // 4 does not divide 6
      expect(code(() => ops.rmsNorm(x6, { width: 3, rstd: f32(new Float32Array(2), [2]) }))).toBe('ERR_LORA_SHAPE');  // rstd needs 2 x 2
      expect(code(() => ops.rmsNorm(x6, { eps: 0 }))).toBe('ERR_LORA_INVALID_ARG');
      expect(code(() => ops.rmsNorm(f32(rand(12, 11), [2, 6], 'bf16')))).toBe('ERR_LORA_DTYPE');
      expect(code(() => ops.rmsNorm(x6, { width: 3, out: x6 }))).toBe('NO_ERROR');  // in place
      const r = ops.rmsNorm(x6, { width: 3 });
      expect(code(() => ops.rmsNormBackward(x6, x6, r.rstd, { width: 3, dx: x6 }))).toBe('ERR_LORA_INVALID_ARG');  // dx aliases x
      const pos = i32([0, 5], [2]);
      expect(code(() => ops.rope(x6, pos, f32(rand(3, 1), [3]), { heads: 2 }))).toBe('ERR_LORA_SHAPE');  // head dim 3 is odd
      expect(code(() => ops.rope(x6, pos, f32(rand(2, 1), [2]), { heads: 1 }))).toBe('ERR_LORA_SHAPE');  // invFreq needs D/2 = 3
      expect(code(() => ops.rope(x6, i32([0], [1]), f32(rand(3, 1), [3]), { heads: 1 }))).toBe('ERR_LORA_SHAPE');  // one position per row
      expect(code(() => ops.rope(x6, pos, f32(rand(3, 1), [3]), { heads: 1, out: x6 }))).toBe('NO_ERROR');  // in place
      expect(code(() => ops.swiGlu(x6, f32(rand(10, 1), [2, 5])))).toBe('ERR_LORA_SHAPE');
      expect(code(() => ops.swiGlu(x6, x6, { out: x6 }))).toBe('ERR_LORA_INVALID_ARG');
      const b6 = f32(rand(12, 12), [2, 6], 'bf16');
      expect(code(() => ops.swiGlu(b6, x6))).toBe('ERR_LORA_DTYPE');  // gate and up share one dtype
      expect(code(() => ops.swiGlu(f32(rand(12, 12), [2, 6], 'f16'), f32(rand(12, 12), [2, 6], 'f16')))).toBe('ERR_LORA_DTYPE');
      expect(code(() => ops.swiGlu(b6, b6, { out: f32(rand(12, 13), [2, 6], 'bf16') }))).toBe('ERR_LORA_DTYPE');  // y is f32
      expect(code(() => ops.swiGluBackward(x6, b6, x6))).toBe('ERR_LORA_DTYPE');
      expect(code(() => ops.swiGluBackward(b6, b6, b6))).toBe('ERR_LORA_DTYPE');  // dy is f32
      expect(code(() => ops.swiGluBackward(b6, b6, x6))).toBe('NO_ERROR');
      expect(code(() => ops.swiGluBackward(x6, x6, x6, { dgate: f32(new Float32Array(12), [2, 6]), dup: f32(new Float32Array(10), [2, 5]) }))).toBe('ERR_LORA_SHAPE');
      expect(code(() => ops.ropeInvFreq(8, 10000, { rope_type: 'yarn', factor: 4 }))).toBe('ERR_LORA_UNSUPPORTED');
    }
    // Grouped KV heads, query offsets and KV caches: k's width must be whole KV heads dividing the
    // query heads; qOffset + T <= Tk; a cache comes as a pair, with an offset, and must hold the rows.
    {
      const q = f32(rand(1 * 2 * 8, 9), [1, 2, 8]);  // 4 heads of D = 2
      const kv = (rows: number, w: number) => f32(rand(rows * w, 10), [1, rows, w]);
      expect(code(() => ops.attention(q, kv(2, 6), kv(2, 6), { heads: 4 }))).toBe('ERR_LORA_SHAPE');  // 3 KV heads do not divide 4
      expect(code(() => ops.attention(q, kv(2, 3), kv(2, 3), { heads: 4 }))).toBe('ERR_LORA_SHAPE');  // not whole heads
      expect(code(() => ops.attention(q, kv(1, 4), kv(1, 4), { heads: 4 }))).toBe('ERR_LORA_SHAPE');  // fewer keys than queries
      expect(code(() => ops.attention(q, kv(5, 4), kv(5, 4), { heads: 4, qOffset: 4 }))).toBe('ERR_LORA_INVALID_ARG');
      expect(code(() => ops.attention(q, kv(5, 4), kv(5, 4), { heads: 4, qOffset: 3 }))).toBe('NO_ERROR');
      expect(code(() => ops.attention(q, kv(5, 4), kv(5, 4), { heads: 4, mask: i32([1, 1], [1, 2]) }))).toBe('ERR_LORA_SHAPE');  // mask is [B, Tk]
      const cache = (rows: number) => ({ k: kv(rows, 4), v: kv(rows, 4) });
      expect(code(() => ops.attention(q, kv(2, 4), kv(2, 4), { heads: 4, cache: { ...cache(6), offset: 5 } }))).toBe('ERR_LORA_INVALID_ARG');  // past the capacity
      expect(code(() => ops.attention(q, kv(3, 4), kv(3, 4), { heads: 4, cache: { ...cache(6), offset: 1 } }))).toBe('ERR_LORA_SHAPE');  // k is the T new rows
      expect(code(() => ops.attention(q, kv(2, 4), kv(2, 4), { heads: 4, cache: { k: kv(6, 4), v: kv(6, 6), offset: 1 } }))).toBe('ERR_LORA_SHAPE');
      expect(code(() => ops.attention(q, kv(2, 4), kv(2, 4), { heads: 4, cache: { k: kv(6, 4), v: kv(6, 4).narrow(1, 0, 6), offset: 1 } }))).toBe('NO_ERROR');
      expect(code(() => A.opAttention(q, kv(2, 4), kv(2, 4), f32(new Float32Array(16), [1, 2, 8]), f32(new Float32Array(8), [1, 4, 2]), 4, null, null, null, 'ref', 1, kv(6, 4), null))).toBe('ERR_LORA_INVALID_ARG');
      expect(code(() => A.opAttention(q, kv(2, 4), kv(2, 4), f32(new Float32Array(16), [1, 2, 8]), f32(new Float32Array(8), [1, 4, 2]), 4, null, null, null, 'ref', null, kv(6, 4), kv(6, 4)))).toBe('ERR_LORA_INVALID_ARG');
      const c = cache(6);
      expect(code(() => ops.attention(q, kv(2, 4), kv(2, 4), { heads: 4, cache: { k: c.k, v: c.k, offset: 1 } }))).toBe('ERR_LORA_INVALID_ARG');
    }
    // The backward from the output divides by gamma: a zero gamma is refused.
    const lnx = f32(rand(8, 8), [2, 4]);
    const lns = ops.layerNorm(lnx, { gamma: f32(Float32Array.of(1, 2, 3, 4), [4]) });
    expect(code(() => ops.layerNormBackwardFromOutput(lnx, lns.y, f32(Float32Array.of(1, 0, 3, 4), [4]), lns.rstd))).toBe('ERR_LORA_INVALID_ARG');
    // The keep mask must hold exactly ceil(n/64) i64 words.
    expect(code(() => ops.reluMask(f32(rand(65, 8), [65]), { bits: T.empty('i64', [1]) }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.reluMaskBackward(T.empty('i64', [3]), f32(rand(65, 8), [65])))).toBe('ERR_LORA_SHAPE');
    // The fused linear+relu / masked dX: one keep word per 64 outputs, no accumulate with relu.
    expect(code(() => ops.matmulXWt(x, w, { reluBits: T.empty('i64', [2]) }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.matmulXWt(x, w, { reluBits: T.empty('i64', [1]), out: f32(new Float32Array(12), [4, 3]), accumulate: true }))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.matmulXWt(x, w, { reluBits: i32([0, 0], [2]) }))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.matmulDYW(f32(rand(4 * 3, 3), [4, 3]), w, { maskBits: T.empty('i64', [2]) }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.matmulXWt(x, w, { reluBits: T.empty('i64', [1]) }))).toBe('NO_ERROR');
    // The fused output projection: f32 residual [M, N], no accumulate/relu, dropout only with it.
    const res = f32(rand(12, 9), [4, 3]);
    expect(code(() => ops.matmulXWt(x, w, { residual: f32(rand(8, 9), [4, 2]) }))).toBe('ERR_LORA_SHAPE');
    expect(code(() => ops.matmulXWt(x, w, { residual: res, out: f32(new Float32Array(12), [4, 3]), accumulate: true }))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.matmulXWt(x, w, { residual: res, outDtype: 'bf16' }))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.matmulXWt(x, w, { dropout: { p: 0.1, seed: 1 } }))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.matmulXWt(x, w, { residual: res, dropout: { p: 1.5, seed: 1 } }))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.matmulXWt(x, w, { residual: res, dropout: { p: 0.1, seed: 1 } }))).toBe('NO_ERROR');
  });

  it('wrong dtypes and unsupported combinations', () => {
    expect(code(() => ops.matmulXWt(i32([1, 2, 3, 4, 5, 6, 7, 8], [1, 8]), w))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.matmulXWt(x, i32(new Array(24).fill(0), [3, 8])))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.matmulXWt(x, w, { out: T.empty('f16', [4, 3]) }))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.matmulDW(x, x, T.empty('bf16', [8, 8])))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.relu(f32(rand(4, 9), [4], 'bf16')))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.reluMask(f32(rand(4, 9), [4]), { bits: i32([0, 0], [2]) }))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.layerNorm(f32(rand(8, 9), [2, 4], 'bf16')))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.embedding(f32(rand(4, 9), [4]), f32(rand(12, 9), [3, 4])))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.embedding(i32([0, 1], [2]), weight('nf4', 3, 64, 9)))).toBe('ERR_LORA_DTYPE'); // token table: f32 or bf16
    expect(code(() => ops.quantize(x, 'bf16' as 'nf4'))).toBe('ERR_LORA_INVALID_ARG'); // a bad argument value
    expect(code(() => ops.quantize(x, 'nf4', { blockSize: 6 }))).toBe('ERR_LORA_INVALID_ARG');
    const q = weight('nf4', 3, 64, 10);
    expect(code(() => ops.matmulXWt(q, q, { out: T.empty('f32', [3, 3]) }))).toBe('ERR_LORA_DTYPE');
  });

  it('unknown and unavailable backends answer honestly', () => {
    // No GPU: 'cuda' is unavailable. With one: these host tensors are on the wrong device for it.
    expect(code(() => ops.matmulXWt(x, w, { backend: 'cuda' }))).toBe(A.cudaInfo().usable ? 'ERR_LORA_DEVICE' : 'ERR_LORA_UNSUPPORTED');
    expect(code(() => ops.matmulXWt(x, w, { backend: 'tpu' as 'cpu' }))).toBe('ERR_LORA_UNSUPPORTED');
    // emu implements the op set (cuda/kernels on the CPU emulator) and refuses only what its kernels cannot do.
    expect(ops.opSupports('emu', 'matmul_xwt', ['f32', 'f32', 'f32']).ok).toBe(true);
    expect(ops.opSupports('emu', 'attention', ['f32'], [1, 4, 1, 160])).toMatchObject({ ok: false, reason: expect.stringMatching(/head dim 160/) });
    expect(ops.opSupports('ref', 'matmul_xwt', ['f32', 'nf4', 'f32']).ok).toBe(true);
  });

  it('disposed tensors, wrong devices, non-tensors', () => {
    const d = f32(rand(32, 11), [4, 8]);
    d.dispose();
    expect(code(() => ops.matmulXWt(d, w))).toBe('ERR_LORA_DISPOSED');
    expect(code(() => ops.relu(f32(rand(4, 1), [4]), { out: d }))).toBe('ERR_LORA_DISPOSED');
    expect(code(() => (A.opMatmulXWt as (...a: unknown[]) => unknown)({}, w, null, x, false))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => (A.opRelu as (...a: unknown[]) => unknown)())).toBe('ERR_LORA_INVALID_ARG');
  });

  it('aliasing outputs are refused; exact in-place is allowed where documented', () => {
    const y = f32(rand(16, 13), [4, 4]);
    expect(code(() => ops.matmulXWt(y, f32(rand(16, 14), [4, 4]), { out: y }))).toBe('ERR_LORA_INVALID_ARG');
    const big = f32(rand(64, 15), [64]);
    expect(code(() => ops.relu(big.narrow(0, 0, 32), { out: big.narrow(0, 16, 32) }))).toBe('ERR_LORA_INVALID_ARG');
    const la = f32(rand(16, 16), [2, 8]);
    const lb = f32(rand(6, 17), [3, 2]);
    const { y: ly, xa } = ops.loraForward(x, w, la, lb, { scale: 1 });
    expect(code(() => ops.loraBackward(ly, x, w, la, lb, xa, { scale: 1, da: la }))).toBe('ERR_LORA_INVALID_ARG');
    const t = f32(Float32Array.of(-1, 2, -3, 4), [4]);
    ops.relu(t, { out: t });
    expect(Array.from(arr(t))).toEqual([0, 2, 0, 4]);
    // Column slices of one buffer do not overlap each other.
    const qkv = f32(rand(2 * 12, 18), [1, 2, 12]);
    const g = T.empty('f32', [1, 2, 12]);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.narrow(2, i * 4, 4));
    const [dq, dk, dv] = [0, 1, 2].map((i) => g.narrow(2, i * 4, 4));
    const f = ops.attention(q, k, v, { heads: 2 });
    expect(code(() => ops.attentionBackward(f.o, q, k, v, f.o, f.lse, { heads: 2, dq, dk, dv }))).toBe('NO_ERROR');
  });

  it('out-of-range indices', () => {
    expect(code(() => ops.embedding(i32([0, 3], [2]), f32(rand(12, 19), [3, 4])))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.embedding(i32([0, -1], [2]), f32(rand(12, 19), [3, 4])))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.crossEntropy(x, w, i32([0, 1, 3, -100], [4])))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.attention(f32(rand(8, 1), [1, 2, 4]), f32(rand(8, 1), [1, 2, 4]), f32(rand(8, 1), [1, 2, 4]), { heads: 1, kvLens: i32([3], [1]) }))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => ops.dropout(x, 1.5, { seed: 1 }))).toBe('ERR_LORA_INVALID_ARG');
  });

  for (const b of backends) {
    it(`NaN/Inf propagate (${b})`, () => {
      const xs = rand(4 * 64, 20);
      xs[5] = NaN; // row 0
      xs[64 + 3] = Infinity; // row 1
      const xn = f32(xs, [4, 64]);
      for (const wd of ['f32', 'bf16', 'nf4']) {
        const y = arr(ops.matmulXWt(xn, weight(wd, 5, 64, 21), { backend: b }));
        expect(y.slice(0, 5).every(Number.isNaN)).toBe(true);
        expect(y.slice(5, 10).every((v) => !Number.isFinite(v))).toBe(true);
        expect(y.slice(10).every(Number.isFinite)).toBe(true);
      }
      const ln = arr(ops.layerNorm(xn, { backend: b }).y);
      expect(ln.slice(0, 64).every(Number.isNaN)).toBe(true);
      expect(ln.slice(128).every(Number.isFinite)).toBe(true);
      const r = arr(ops.relu(f32(Float32Array.of(NaN, -1, Infinity), [3]), { backend: b }));
      expect(Number.isNaN(r[0]) && r[1] === 0 && r[2] === Infinity).toBe(true);
      const rm = ops.reluMask(f32(Float32Array.of(NaN, -1, Infinity), [3]), { backend: b });
      const ry = arr(rm.y);
      expect(Number.isNaN(ry[0]) && ry[1] === 0 && ry[2] === Infinity).toBe(true);
      expect(Array.from(unpackBits(rm.bits, 3))).toEqual([1, 0, 1]); // NaN counts as kept
      const ce = ops.crossEntropy(xn, weight('f32', 7, 64, 22), i32([1, 2, 3, 4], [4]), { backend: b });
      expect(Number.isNaN(ce.loss)).toBe(true);
      const qs = rand(2 * 8, 23);
      qs[8] = NaN; // query row 1
      const at = ops.attention(f32(qs, [1, 2, 8]), f32(rand(16, 24), [1, 2, 8]), f32(rand(16, 25), [1, 2, 8]), { heads: 1, backend: b });
      const o = arr(at.o);
      expect(o.slice(0, 8).every(Number.isFinite)).toBe(true);
      expect(o.slice(8).every(Number.isNaN)).toBe(true);
    });
  }
});

describe('ref against hand-computed examples', () => {
  it('matmul: [[1,2],[3,4]]·[[1,0],[1,1],[0,2]]ᵀ + [0.5,0,-1]', () => {
    const y = ops.matmulXWt(f32(Float32Array.of(1, 2, 3, 4), [2, 2]), f32(Float32Array.of(1, 0, 1, 1, 0, 2), [3, 2]), { bias: f32(Float32Array.of(0.5, 0, -1), [3]), backend: 'ref' });
    expect(Array.from(arr(y))).toEqual([1.5, 3, 3, 3.5, 7, 7]);
  });
  it('LoRA: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ and its grads', () => {
    // x = [1, 2], W = I, A = [[1, 1]] (r = 1), B = [[2], [-1]], s = 0.5:
    // x·Aᵀ = 3; y = [1, 2] + 0.5·3·[2, -1] = [4, 0.5].
    const xt = f32(Float32Array.of(1, 2), [1, 2]);
    const wt = f32(Float32Array.of(1, 0, 0, 1), [2, 2]);
    const at = f32(Float32Array.of(1, 1), [1, 2]);
    const bt = f32(Float32Array.of(2, -1), [2, 1]);
    const { y, xa } = ops.loraForward(xt, wt, at, bt, { scale: 0.5, backend: 'ref' });
    expect(Array.from(arr(y))).toEqual([4, 0.5]);
    expect(Array.from(arr(xa))).toEqual([3]);
    // dy = [1, 1]: dXA = 0.5·(1·2 + 1·(-1)) = 0.5; dB = 0.5·dyᵀ·xa = [1.5, 1.5];
    // dA = dXA·x = [0.5, 1]; dx = dy·W + dXA·A = [1, 1] + [0.5, 0.5] = [1.5, 1.5].
    const da = f32(new Float32Array(2), [1, 2]);
    const db = f32(new Float32Array(2), [2, 1]);
    const { dx } = ops.loraBackward(f32(Float32Array.of(1, 1), [1, 2]), xt, wt, at, bt, xa, { scale: 0.5, da, db, backend: 'ref' });
    expect(Array.from(arr(dx!))).toEqual([1.5, 1.5]);
    expect(Array.from(arr(da))).toEqual([0.5, 1]);
    expect(Array.from(arr(db))).toEqual([1.5, 1.5]);
  });
  it('NF4 and int4 codes: high nibble first, absmax scale', () => {
    const w = f32(Float32Array.from({ length: 64 }, (_, i) => (i === 0 ? -2 : i === 1 ? 2 : 0)), [1, 64]);
    const q = ops.quantize(w, 'nf4', { backend: 'ref' });
    expect(q.bytes()[0]).toBe(0x0f); // -1 -> code 0 (high nibble), +1 -> code 15
    expect(q.bytes()[1]).toBe(0x77); // zeros -> code 7
    expect(Array.from(q.scales()!)).toEqual([2]);
    const q4 = ops.quantize(w, 'int4', { backend: 'ref' });
    expect(q4.bytes()[0]).toBe(0x1f); // -1 -> 1, +1 -> 15
    expect(Array.from(arr(ops.dequantize(q4, { backend: 'ref' })).slice(0, 3))).toEqual([-2, 2, 0]);
  });
  it('Philox4x32-10 dropout mask is the documented mapping', () => {
    // Known-answer vector of Random123: philox4x32_10(ctr = 0, key = 0) = 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
    // keep iff word >= p·2^32: with p = 0.75 (threshold 0xC0000000) only 0xe169c58d is kept.
    const out = arr(ops.dropout(f32(Float32Array.of(1, 1, 1, 1), [4]), 0.75, { seed: 0, backend: 'ref' }));
    expect(Array.from(out)).toEqual([0, 4, 0, 0]);
  });
});
