// Gradient mode: every backward of `ref` against central finite differences of its forward on
// tiny shapes. The scalar checked is L = Σ out ⊙ R for a fixed random R (so dOut = R).
// Error = ‖analytic − numeric‖ / ‖numeric‖; f32 forward outputs with h = 1e-2 give ~1e-4.
import { describe, expect, it } from 'vitest';

import { arr, f32, i32, ops, rand, type NativeTensor } from './ops-helpers.js';

const H = 1e-2;
const TOL = 2e-3;

function dotR(out: ArrayLike<number>, r: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < out.length; ++i) s += out[i] * r[i];
  return s;
}

/** Numeric gradient of loss(vals) w.r.t. every element of vals[which]. */
function numeric(vals: Float32Array[], which: number, loss: (v: Float32Array[]) => number): Float64Array {
  const g = new Float64Array(vals[which].length);
  for (let i = 0; i < g.length; ++i) {
    const keep = vals[which][i];
    vals[which][i] = keep + H;
    const lp = loss(vals);
    vals[which][i] = keep - H;
    const lm = loss(vals);
    vals[which][i] = keep;
    g[i] = (lp - lm) / (2 * H);
  }
  return g;
}

function relErr(a: ArrayLike<number>, n: ArrayLike<number>): number {
  let num = 0,
    den = 0;
  for (let i = 0; i < n.length; ++i) {
    num += (a[i] - n[i]) ** 2;
    den += n[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

interface GradCase {
  name: string;
  inputs: Float32Array[];
  /** Indices of inputs whose gradient is checked, with their names. */
  check: [number, string][];
  loss(v: Float32Array[]): number;
  analytic(v: Float32Array[]): Float32Array[];
}

const cases: GradCase[] = [];
const be = { backend: 'ref' as const };

{
  const [M, K, N] = [3, 5, 4];
  const R = rand(M * N, 101);
  cases.push({
    name: 'matmul (dX = dY·W, dW += dYᵀ·X, dbias)',
    inputs: [rand(M * K, 102), rand(N * K, 103), rand(N, 104)],
    check: [[0, 'dx'], [1, 'dw'], [2, 'dbias']],
    loss: ([x, w, b]) => dotR(arr(ops.matmulXWt(f32(x, [M, K]), f32(w, [N, K]), { bias: f32(b, [N]), ...be })), R),
    analytic: ([x, w]) => {
      const dy = f32(R, [M, N]);
      const dx = arr(ops.matmulDYW(dy, f32(w, [N, K]), be));
      const dw = f32(new Float32Array(N * K), [N, K]);
      const db = f32(new Float32Array(N), [N]);
      ops.matmulDW(dy, f32(x, [M, K]), dw, { dbias: db, ...be });
      return [dx, arr(dw), arr(db)];
    },
  });
}

for (const [G, p] of [[1, 0], [2, 0.3]] as [number, number][]) {
  const [M, K, N, r] = [3, 4, 3, 2];
  const R = rand(M * G * N, 111);
  const W = rand(G * N * K, 112);
  const opts = { scale: 1.5, dropout: p, seed: 9, offset: 1, groups: G, ...be };
  cases.push({
    name: `lora (G=${G}, dropout ${p}): dX, dA, dB`,
    inputs: [rand(M * K, 113), rand(G * r * K, 114), rand(G * N * r, 115)],
    check: [[0, 'dx'], [1, 'da'], [2, 'db']],
    loss: ([x, a, b]) => dotR(arr(ops.loraForward(f32(x, [M, K]), f32(W, [G * N, K]), f32(a, [G * r, K]), f32(b, [G * N, r]), opts).y), R),
    analytic: ([x, a, b]) => {
      const xt = f32(x, [M, K]),
        wt = f32(W, [G * N, K]),
        at = f32(a, [G * r, K]),
        bt = f32(b, [G * N, r]);
      const { xa } = ops.loraForward(xt, wt, at, bt, opts);
      const da = f32(new Float32Array(G * r * K), [G * r, K]);
      const db = f32(new Float32Array(G * N * r), [G * N, r]);
      const { dx } = ops.loraBackward(f32(R, [M, G * N]), xt, wt, at, bt, xa, { ...opts, da, db });
      return [arr(dx!), arr(da), arr(db)];
    },
  });
}

{
  const [M, C] = [3, 6];
  const R = rand(M * C, 121);
  cases.push({
    name: 'layernorm: dX, dgamma, dbeta',
    inputs: [rand(M * C, 122, -2, 2), rand(C, 123), rand(C, 124)],
    check: [[0, 'dx'], [1, 'dgamma'], [2, 'dbeta']],
    loss: ([x, g, b]) => dotR(arr(ops.layerNorm(f32(x, [M, C]), { gamma: f32(g, [C]), beta: f32(b, [C]), ...be }).y), R),
    analytic: ([x, g, b]) => {
      const xt = f32(x, [M, C]);
      const gt = f32(g, [C]);
      const st = ops.layerNorm(xt, { gamma: gt, beta: f32(b, [C]), ...be });
      const dg = f32(new Float32Array(C), [C]);
      const db = f32(new Float32Array(C), [C]);
      const dx = ops.layerNormBackward(f32(R, [M, C]), xt, st.mean, st.rstd, { gamma: gt, dgamma: dg, dbeta: db, ...be });
      return [arr(dx), arr(dg), arr(db)];
    },
  });
}

for (const pad of ['none', 'mask'] as const) {
  const [B, T, Hh, D] = [2, 4, 2, 3];
  const C = Hh * D;
  const R = rand(B * T * C, 131);
  const mask = () => (pad === 'mask' ? { mask: i32([1, 1, 1, 1, 0, 1, 1, 1], [B, T]) } : {});
  const o = { heads: Hh, ...be };
  cases.push({
    name: `attention (pad=${pad}): dQ, dK, dV`,
    inputs: [rand(B * T * C, 132), rand(B * T * C, 133), rand(B * T * C, 134)],
    check: [[0, 'dq'], [1, 'dk'], [2, 'dv']],
    loss: ([q, k, v]) => dotR(arr(ops.attention(f32(q, [B, T, C]), f32(k, [B, T, C]), f32(v, [B, T, C]), { ...o, ...mask() }).o), R),
    analytic: ([q, k, v]) => {
      const qt = f32(q, [B, T, C]),
        kt = f32(k, [B, T, C]),
        vt = f32(v, [B, T, C]);
      const f = ops.attention(qt, kt, vt, { ...o, ...mask() });
      const g = ops.attentionBackward(f32(R, [B, T, C]), qt, kt, vt, f.o, f.lse, { ...o, ...mask() });
      return [arr(g.dq), arr(g.dk), arr(g.dv)];
    },
  });
}

{
  // Grouped KV heads (4 query heads over 2 KV heads) and a query offset: 3 query rows at positions
  // 2..4 over 5 key rows, so dK/dV sum over each KV head's two query heads and the first two keys
  // are seen by every query.
  const [B, T, Tk, Hh, Hkv, D] = [2, 3, 5, 4, 2, 2];
  const C = Hh * D, Ckv = Hkv * D;
  const R = rand(B * T * C, 135);
  const o = { heads: Hh, qOffset: 2, mask: i32([1, 1, 1, 1, 1, 1, 0, 1, 1, 1], [B, Tk]), ...be };
  cases.push({
    name: 'attention (GQA 4/2 heads, query offset 2, mask): dQ, dK, dV',
    inputs: [rand(B * T * C, 136), rand(B * Tk * Ckv, 137), rand(B * Tk * Ckv, 138)],
    check: [[0, 'dq'], [1, 'dk'], [2, 'dv']],
    loss: ([q, k, v]) => dotR(arr(ops.attention(f32(q, [B, T, C]), f32(k, [B, Tk, Ckv]), f32(v, [B, Tk, Ckv]), o).o), R),
    analytic: ([q, k, v]) => {
      const qt = f32(q, [B, T, C]),
        kt = f32(k, [B, Tk, Ckv]),
        vt = f32(v, [B, Tk, Ckv]);
      const f = ops.attention(qt, kt, vt, o);
      const g = ops.attentionBackward(f32(R, [B, T, C]), qt, kt, vt, f.o, f.lse, o);
      return [arr(g.dq), arr(g.dk), arr(g.dv)];
    },
  });
}

{
  // RMSNorm as QK-norm: 2 rows x 2 groups of 3 (rstd per group), dx and dw.
  const [M, G, C] = [2, 2, 3];
  const R = rand(M * G * C, 141);
  cases.push({
    name: 'rmsnorm (2 groups per row): dX, dw',
    inputs: [rand(M * G * C, 142, -2, 2), rand(C, 143)],
    check: [[0, 'dx'], [1, 'dw']],
    loss: ([x, w]) => dotR(arr(ops.rmsNorm(f32(x, [M, G * C]), { w: f32(w, [C]), ...be }).y), R),
    analytic: ([x, w]) => {
      const xt = f32(x, [M, G * C]),
        wt = f32(w, [C]);
      const f = ops.rmsNorm(xt, { w: wt, ...be });
      const dw = f32(new Float32Array(C), [C]);
      const dx = ops.rmsNormBackward(f32(R, [M, G * C]), xt, f.rstd, { w: wt, dw, ...be });
      return [arr(dx), arr(dw)];
    },
  });
}

{
  // RoPE (2 rows at positions 3 and 11, 2 heads of 4): the backward is the inverse rotation.
  const [M, Hh, D] = [2, 2, 4];
  const R = rand(M * Hh * D, 144);
  const pos = i32([3, 11], [M]);
  const inv = f32(ops.ropeInvFreq(D, 10000), [D / 2]);
  cases.push({
    name: 'rope: dX (inverse rotation)',
    inputs: [rand(M * Hh * D, 145)],
    check: [[0, 'dx']],
    loss: ([x]) => dotR(arr(ops.rope(f32(x, [M, Hh * D]), pos, inv, { heads: Hh, ...be })), R),
    analytic: () => [arr(ops.rope(f32(R, [M, Hh * D]), pos, inv, { heads: Hh, inverse: true, ...be }))],
  });
}

{
  const [M, F] = [3, 4];
  const R = rand(M * F, 146);
  cases.push({
    name: 'swiglu: dgate, dup',
    inputs: [rand(M * F, 147, -3, 3), rand(M * F, 148)],
    check: [[0, 'dgate'], [1, 'dup']],
    loss: ([g, u]) => dotR(arr(ops.swiGlu(f32(g, [M, F]), f32(u, [M, F]), be)), R),
    analytic: ([g, u]) => {
      const r = ops.swiGluBackward(f32(g, [M, F]), f32(u, [M, F]), f32(R, [M, F]), be);
      return [arr(r.dgate), arr(r.dup)];
    },
  });
}

{
  // bf16 gate/up (autocast keeps the gate|up linear's bf16 output): the backward of the bf16 op
  // against finite differences of the f32 forward, at points a bf16 holds exactly.
  const [M, F] = [3, 4];
  const R = rand(M * F, 149);
  const bf16 = (v: Float32Array) => f32(v, [M, F], 'bf16');
  cases.push({
    name: 'swiglu bf16 gate/up: dgate, dup',
    inputs: [arr(bf16(rand(M * F, 150, -3, 3))), arr(bf16(rand(M * F, 151)))],
    check: [[0, 'dgate'], [1, 'dup']],
    loss: ([g, u]) => dotR(arr(ops.swiGlu(f32(g, [M, F]), f32(u, [M, F]), be)), R),
    analytic: ([g, u]) => {
      const r = ops.swiGluBackward(bf16(g), bf16(u), f32(R, [M, F]), be);
      return [arr(r.dgate), arr(r.dup)];
    },
  });
}

{
  const n = 12;
  const R = rand(n, 141);
  // Inputs kept at least 0.1 away from ReLU's kink so ±h never crosses it.
  const x = Float32Array.from(rand(n, 142), (v) => (v >= 0 ? v + 0.1 : v - 0.1));
  cases.push({
    name: 'relu: dX',
    inputs: [x],
    check: [[0, 'dx']],
    loss: ([v]) => dotR(arr(ops.relu(f32(v, [n]), be)), R),
    analytic: ([v]) => [arr(ops.reluBackward(ops.relu(f32(v, [n]), be), f32(R, [n]), be))],
  });
  cases.push({
    name: 'dropout p=0.4: dX (same op on dY)',
    inputs: [rand(n, 143)],
    check: [[0, 'dx']],
    loss: ([v]) => dotR(arr(ops.dropout(f32(v, [n]), 0.4, { seed: 5, ...be })), R),
    analytic: () => [arr(ops.dropout(f32(R, [n]), 0.4, { seed: 5, ...be }))],
  });
  cases.push({
    name: 'residual add (alpha 0.5): dA, dB',
    inputs: [rand(n, 144), rand(n, 145)],
    check: [[0, 'da'], [1, 'db']],
    loss: ([a, b]) => dotR(arr(ops.add(f32(a, [n]), f32(b, [n]), { alpha: 0.5, ...be })), R),
    analytic: () => [R, Float32Array.from(R, (v) => 0.5 * v)],
  });
}

{
  const [M, C, V] = [4, 5, 9];
  const W = rand(V * C, 151);
  const tg = i32([3, -100, 8, 0], [M]);
  cases.push({
    name: 'cross-entropy (chunk 4, one ignored row): dH',
    inputs: [rand(M * C, 152, -2, 2)],
    check: [[0, 'dh']],
    loss: ([h]) => ops.crossEntropy(f32(h, [M, C]), f32(W, [V, C]), tg, { chunk: 4, dh: false, ...be }).loss,
    analytic: ([h]) => [arr(ops.crossEntropy(f32(h, [M, C]), f32(W, [V, C]), tg, { chunk: 4, ...be }).dh!)],
  });
}

{
  const [M, C, V, P] = [5, 3, 4, 8];
  const ids = i32([1, 3, 1, 0, 2], [M]);
  const pos = i32([0, 1, 2, 3, 1], [M]);
  const R = rand(M * C, 161);
  cases.push({
    name: 'embedding (+positions, repeated ids): dtable, dposTable',
    inputs: [rand(V * C, 162), rand(P * C, 163)],
    check: [[0, 'dtable'], [1, 'dposTable']],
    loss: ([t, p]) => dotR(arr(ops.embedding(ids, f32(t, [V, C]), { positions: pos, posTable: f32(p, [P, C]), ...be })), R),
    analytic: () => {
      const dt = f32(new Float32Array(V * C), [V, C]);
      const dp = f32(new Float32Array(P * C), [P, C]);
      ops.embeddingBackward(ids, f32(R, [M, C]), { dtable: dt, positions: pos, dposTable: dp, ...be });
      return [arr(dt), arr(dp)];
    },
  });
}

describe('gradient mode: ref backwards vs finite differences', () => {
  for (const c of cases) {
    it(c.name, () => {
      const got = c.analytic(c.inputs.map((v) => Float32Array.from(v)));
      for (const [k, [which, gname]] of c.check.entries()) {
        const num = numeric(c.inputs.map((v) => Float32Array.from(v)), which, c.loss);
        const err = relErr(got[k], num);
        console.log(`ref ${c.name} ${gname}: rel err ${err.toExponential(1)} (tol ${TOL.toExponential(0)}: f32 outputs, h=${H}) ${err <= TOL ? 'ok' : 'FAIL'}`);
        expect(err).toBeLessThanOrEqual(TOL);
      }
    });
  }
  it("ropeInvFreq: theta^(-2i/d), and llama3 scaling's three bands", () => {
    // dim 8, theta 10000: 1, 0.1, 0.01, 0.001 (f32).
    expect(Array.from(ops.ropeInvFreq(8, 10000))).toEqual([1, 0.1, 0.01, 0.001].map(Math.fround));
    // llama3 (factor 8, low 1, high 4, original 8192): wavelengths 2π/inv < 2048 kept, > 8192 divided
    // by 8, between blended with smooth = (8192/wavelen - 1) / 3.
    const sc = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const base = ops.ropeInvFreq(64, 500000);
    const got = ops.ropeInvFreq(64, 500000, sc);
    let kept = 0, divided = 0, blended = 0;
    for (let i = 0; i < 32; ++i) {
      const wl = (2 * Math.PI) / base[i];
      const smooth = (8192 / wl - 1) / 3;
      const want = wl < 2048 ? base[i] : wl > 8192 ? base[i] / 8 : (1 - smooth) * (base[i] / 8) + smooth * base[i];
      if (wl < 2048) kept++;
      else if (wl > 8192) divided++;
      else blended++;
      expect(got[i]).toBeCloseTo(Math.fround(want), 12);
    }
    expect(kept * divided * blended).toBeGreaterThan(0);
  });
  it('adamw matches PyTorch semantics (closed form, 2 steps)', () => {
    const p = f32(Float32Array.of(1, -2, 0.5), [3]);
    const g = f32(Float32Array.of(0.1, -0.3, 0), [3]);
    const m = f32(new Float32Array(3), [3]);
    const v = f32(new Float32Array(3), [3]);
    const [lr, b1, b2, eps, wd] = [0.1, 0.9, 0.999, 1e-8, 0.01];
    const P = [1, -2, 0.5],
      Gr = [0.1, -0.3, 0],
      Mm = [0, 0, 0],
      Vv = [0, 0, 0];
    for (let step = 1; step <= 2; ++step) {
      ops.adamw(p, g, m, v, { lr, step, weightDecay: wd, ...be });
      for (let i = 0; i < 3; ++i) {
        P[i] *= 1 - lr * wd;
        Mm[i] = b1 * Mm[i] + (1 - b1) * Gr[i];
        Vv[i] = b2 * Vv[i] + (1 - b2) * Gr[i] ** 2;
        P[i] -= ((lr / (1 - b1 ** step)) * Mm[i]) / (Math.sqrt(Vv[i]) / Math.sqrt(1 - b2 ** step) + eps);
      }
    }
    const got = arr(p);
    for (let i = 0; i < 3; ++i) expect(got[i]).toBeCloseTo(P[i], 6);
  });
});
