// The op matrix: every op × dtype × shape × rank case runs on every backend other than `ref` and
// is compared with `ref` by NMSE, against the tolerance written beside the case with its reason.
// One line per case; a backend that does not run a case says "not supported" (not a failure).
import { describe, expect, it } from 'vitest';

import { arr, concat, f32, i32, isUnsupported, nmse, ops, otherBackends, rand, T, unpackBits, weight, type NativeTensor } from './ops-helpers.js';

type Backend = 'ref' | 'cpu' | 'emu' | 'cuda';
interface Case {
  name: string;
  tol: number;
  why: string;
  run(b: Backend): ArrayLike<number>;
}

// Tolerances. bf16 keeps 8 significant bits: each rounded operand has relative error <= 2^-9,
// so a dot product of rounded operands has NMSE around 1e-5 against the exact f64 reference.
const TOL_BF16 = 1e-4;
const WHY_BF16 = 'operands rounded to bf16 (2^-9 relative), f32 accumulation';
// f32 FMA with f32 accumulation against f64: ~K·2^-24 relative.
const TOL_F32 = 1e-10;
const WHY_F32 = 'f32 FMA accumulation vs f64 reference';
const TOL_EXACT = 0;
const WHY_EXACT = 'same arithmetic, bit-identical';

const cases: Case[] = [];
const W_DTYPES = ['f32', 'f16', 'bf16', 'i8', 'int4', 'nf4'];
const tolFor = (x: string, w: string) => (x === 'f32' && (w === 'f32' || w === 'f16') ? [TOL_F32, WHY_F32] as const : [TOL_BF16, WHY_BF16] as const);

// ---- matmul: the three layouts ----
const shapes: [number, number, number][] = [
  [1, 64, 7],
  [7, 130, 33],
  [33, 130, 65],
  [65, 192, 130],
  [130, 256, 17],
  // Past the cpu GEMM's blocking: several f32 k-blocks (KC 1024 on the f32 path), odd K, M over one MC tile, N over
  // several 64-wide panels and NC tiles; and a long reduction with 4 KiB bf16 rows (small
  // KC/MC/NC in gemm-blocking.test.ts put several k-blocks in every product).
  [203, 601, 331],
  [200, 2048, 24],
];
for (const xd of ['f32', 'bf16'] as const) {
  for (const wd of W_DTYPES) {
    for (const [M, K0, N] of shapes) {
      const K = wd === 'int4' || wd === 'nf4' ? Math.ceil(K0 / 64) * 64 : K0;
      const [tol, why] = tolFor(xd, wd);
      const tag = `${xd} W=${wd} M=${M} K=${K} N=${N}`;
      cases.push({
        name: `matmul_xwt ${tag}${M === 33 ? ' +bias +accumulate' : ''}`,
        tol,
        why,
        run(b) {
          const x = f32(rand(M * K, 1), [M, K], xd);
          const w = weight(wd, N, K, 2);
          const bias = f32(rand(N, 3), [N]);
          const y = f32(rand(M * N, 4), [M, N]);
          ops.matmulXWt(x, w, M === 33 ? { bias, out: y, accumulate: true, backend: b } : { out: y, backend: b });
          return arr(y);
        },
      });
      cases.push({
        name: `matmul_dyw ${tag}`,
        tol,
        why,
        run(b) {
          const dy = f32(rand(M * N, 5), [M, N], xd);
          const w = weight(wd, N, K, 2);
          return arr(ops.matmulDYW(dy, w, { outDtype: 'f32', backend: b }));
        },
      });
    }
  }
  for (const [M, K, N] of shapes) {
    const tol = xd === 'f32' ? TOL_F32 : TOL_BF16;
    cases.push({
      name: `matmul_dw ${xd} M=${M} K=${K} N=${N} +dbias`,
      tol,
      why: xd === 'f32' ? WHY_F32 : WHY_BF16,
      run(b) {
        const dy = f32(rand(M * N, 6), [M, N], xd);
        const x = f32(rand(M * K, 7), [M, K], xd);
        const dw = f32(rand(N * K, 8), [N, K]);
        const db = f32(rand(N, 9), [N]);
        ops.matmulDW(dy, x, dw, { dbias: db, backend: b });
        return concat([arr(dw), arr(db)]);
      },
    });
  }
}
// Several m-blocks and column tasks of the blocked GEMM (MC 144, NC 256).
for (const [xd, wd] of [['f32', 'f32'], ['bf16', 'bf16'], ['bf16', 'nf4'], ['f32', 'int4'], ['bf16', 'i8']] as const) {
  const [M, K, N] = [100, 576, 530];
  const [tol, why] = tolFor(xd, wd);
  cases.push({
    name: `matmul_xwt ${xd} W=${wd} M=${M} K=${K} N=${N} (multi-block)`,
    tol,
    why,
    run: (b) => arr(ops.matmulXWt(f32(rand(M * K, 14), [M, K], xd), weight(wd, N, K, 15), { outDtype: 'f32', backend: b })),
  });
  cases.push({
    name: `matmul_dyw ${xd} W=${wd} M=${M} N=${N} K=${K} (multi-block)`,
    tol,
    why,
    run: (b) => arr(ops.matmulDYW(f32(rand(M * N, 16), [M, N], xd), weight(wd, N, K, 15), { outDtype: 'f32', backend: b })),
  });
}

// bf16 output and rank-3 activations.
cases.push({
  name: 'matmul_xwt bf16 out, x rank 3 [2, 7, 130], W=bf16 N=33',
  tol: 1e-4,
  why: 'bf16 output rounding (2^-9) on top of bf16 operands',
  run(b) {
    const x = f32(rand(2 * 7 * 130, 11), [2, 7, 130], 'bf16');
    const y = ops.matmulXWt(x, weight('bf16', 33, 130, 12), { backend: b });
    return arr(y);
  },
});

// Linear + ReLU in one pass (reluBits) and the masked input gradient (maskBits). N % 64 == 0
// takes the cpu GEMM's epilogue, other N its separate bits pass; f32 and bf16 outputs. The keep
// bits are checked on each backend against its own output (bit set iff y > 0 or NaN), and y is
// compared with ref: an element at a hair from 0 may fall on either side on different backends,
// which changes y there by that hair only.
const keepBitsOf = (y: Float32Array, bits: NativeTensor, tag: string): Float32Array => {
  const got = unpackBits(bits, y.length);
  for (let i = 0; i < y.length; ++i) {
    if (got[i] !== (y[i] > 0 || Number.isNaN(y[i]) ? 1 : 0)) throw new Error(`${tag}: keep bit ${i} is ${got[i]} but y = ${y[i]}`);
  }
  return y;
};
for (const [M, K0, N] of [[37, 130, 128], [19, 96, 70], [150, 200, 320]] as [number, number, number][]) {
  for (const [xd, wd, yd] of [['f32', 'f32', 'f32'], ['bf16', 'bf16', 'bf16'], ['f32', 'nf4', 'bf16'], ['bf16', 'bf16', 'f32']] as const) {
    const K = wd === 'nf4' ? Math.ceil(K0 / 64) * 64 : K0;
    const [tol, why] = yd === 'bf16' ? [1e-4, 'bf16 output rounding (2^-9) on top of the operands'] as const : tolFor(xd, wd);
    cases.push({
      name: `matmul_xwt+relu ${xd} W=${wd} y=${yd} M=${M} K=${K} N=${N} +bias`,
      tol,
      why,
      run(b) {
        const x = f32(rand(M * K, 71), [M, K], xd);
        const bias = f32(rand(N, 72, -0.3, 0.3), [N]);
        const bits = T.empty('i64', [Math.ceil((M * N) / 64)]);
        const y = ops.matmulXWt(x, weight(wd, N, K, 73), { bias, outDtype: yd, reluBits: bits, backend: b });
        return keepBitsOf(arr(yd === 'f32' ? y : ops.cast(y, 'f32', { backend: 'ref' })), bits, b);
      },
    });
    cases.push({
      name: `matmul_dyw+mask ${xd} W=${wd} dx=${yd} M=${M} N=${N} K=${K}${M === 37 ? ' +accumulate' : ''}`,
      tol,
      why,
      run(b) {
        const { bits } = ops.reluMask(f32(rand(M * K, 74), [M * K]), { backend: 'ref' });
        const dx = f32(rand(M * K, 75), [M, K], yd);
        ops.matmulDYW(f32(rand(M * N, 76), [M, N], xd), weight(wd, N, K, 77), { out: dx, maskBits: bits, accumulate: M === 37, backend: b });
        return arr(yd === 'f32' ? dx : ops.cast(dx, 'f32', { backend: 'ref' }));
      },
    });
  }
}

// A sublayer's output projection + dropout + residual add in one pass, against ref, and against
// the separate ops on the same backend (the same products, mask and f32 add: bit-identical).
for (const [M, K0, N] of [[37, 130, 128], [19, 96, 70], [150, 200, 320]] as [number, number, number][]) {
  for (const [xd, wd] of [['f32', 'f32'], ['bf16', 'bf16'], ['f32', 'nf4']] as const) {
    const K = wd === 'nf4' ? Math.ceil(K0 / 64) * 64 : K0;
    const [tol, why] = tolFor(xd, wd);
    for (const p of [0, 0.3]) {
      const make = () => ({
        x: f32(rand(M * K, 81), [M, K], xd),
        w: weight(wd, N, K, 82),
        bias: f32(rand(N, 83, -0.3, 0.3), [N]),
        res: f32(rand(M * N, 84), [M, N]),
      });
      const dropout = { p, seed: 77, offset: 5 };
      cases.push({
        name: `matmul_xwt+dropout+residual ${xd} W=${wd} M=${M} K=${K} N=${N} p=${p}`,
        tol,
        why,
        run(b) {
          const { x, w, bias, res } = make();
          return arr(ops.matmulXWt(x, w, { bias, residual: res, dropout, backend: b }));
        },
      });
      cases.push({
        name: `matmul_xwt+dropout+residual ${xd} W=${wd} M=${M} N=${N} p=${p} == matmul, dropout, add (mismatch count)`,
        tol: TOL_EXACT,
        why: WHY_EXACT,
        run(b) {
          const { x, w, bias, res } = make();
          const fused = arr(ops.matmulXWt(x, w, { bias, residual: res, dropout, backend: b }));
          const y = ops.matmulXWt(x, w, { bias, outDtype: 'f32', backend: b });
          const sep = arr(ops.add(res, ops.dropout(y, p, { seed: 77, offset: 5, backend: b }), { backend: b }));
          return Float32Array.of(fused.reduce((n, v, i) => n + (Object.is(v, sep[i]) ? 0 : 1), 0));
        },
      });
    }
  }
}

// bf16p (bf16 pre-packed in the cpu GEMM's panels): rows % 16 == 0, even K. Its own shapes: a
// last panel 16 or 48 rows wide, K/2 not a multiple of 8 (the k-major repack's tail), several
// panels and m-blocks.
for (const xd of ['f32', 'bf16'] as const) {
  for (const [M, K, N] of [[7, 130, 208], [65, 192, 64], [203, 602, 336], [200, 2048, 32]] as [number, number, number][]) {
    const tag = `${xd} W=bf16p M=${M} K=${K} N=${N}`;
    cases.push({
      name: `matmul_xwt ${tag}`,
      tol: TOL_BF16,
      why: WHY_BF16,
      run: (b) => arr(ops.matmulXWt(f32(rand(M * K, 1), [M, K], xd), weight('bf16p', N, K, 2), { bias: f32(rand(N, 3), [N]), outDtype: 'f32', backend: b })),
    });
    cases.push({
      name: `matmul_dyw ${tag}`,
      tol: TOL_BF16,
      why: WHY_BF16,
      run: (b) => arr(ops.matmulDYW(f32(rand(M * N, 5), [M, N], xd), weight('bf16p', N, K, 2), { outDtype: 'f32', backend: b })),
    });
  }
}

// ---- quantize / dequantize ----
for (const [N, K] of [[16, 2], [48, 130], [208, 96]] as [number, number][]) {
  cases.push({
    name: `quantize+dequantize f32->bf16p N=${N} K=${K}`,
    tol: TOL_EXACT,
    why: WHY_EXACT + ' (RNE, then the same layout)',
    run(b) {
      const q = ops.quantize(f32(rand(N * K, 13, -70000, 70000), [N, K]), 'bf16p', { backend: b });
      return concat([Float32Array.from(q.bytes()), arr(ops.dequantize(q, { backend: b }))]);
    },
  });
}
for (const qd of ['i8', 'int4', 'nf4'] as const) {
  for (const [N, K] of [[1, 64], [7, 128], [33, 192]] as [number, number][]) {
    cases.push({
      name: `quantize+dequantize f32->${qd} N=${N} K=${K}`,
      tol: TOL_EXACT,
      why: WHY_EXACT + ' (same rounding rules, exact LUT decode)',
      run(b) {
        const w = f32(rand(N * K, 13), [N, K]);
        const q = ops.quantize(w, qd, { backend: b });
        return concat([Float32Array.from(q.bytes()), q.scales()!, arr(ops.dequantize(q, { backend: b }))]);
      },
    });
  }
}

// ---- fused LoRA ----
const loraShapes: { M: number; K: number; N: number; r: number; G: number }[] = [
  { M: 1, K: 64, N: 7, r: 1, G: 1 },
  { M: 7, K: 128, N: 33, r: 8, G: 1 },
  { M: 33, K: 64, N: 65, r: 16, G: 3 },
  { M: 65, K: 128, N: 17, r: 8, G: 3 },
  // Group width a multiple of 64: the cpu backend runs all groups as one grouped GEMM (odd r
  // only on its f32 path).
  { M: 70, K: 128, N: 128, r: 8, G: 3 },
  { M: 9, K: 64, N: 64, r: 5, G: 2 },
  // Ranks from 64 up take the cpu backend's untransposed dB path.
  { M: 20, K: 64, N: 64, r: 64, G: 2 },
];
// bf16p splits into groups at whole 64-row panels only.
const bf16pOk = (s: { N: number; G: number }) => s.N % 16 === 0 && (s.G === 1 || s.N % 64 === 0);
for (const xd of ['f32', 'bf16'] as const) {
  for (const wd of ['f32', 'bf16', 'nf4', 'int4', 'bf16p'] as const) {
    for (const s of [...loraShapes, { M: 7, K: 128, N: 48, r: 8, G: 1 }]) {
      if (wd === 'bf16p' ? !bf16pOk(s) : s.N === 48) continue;
      for (const p of [0, 0.25]) {
        const [tol, why] = tolFor(xd, wd);
        const tag = `${xd} W=${wd} M=${s.M} K=${s.K} N=${s.N} r=${s.r} G=${s.G} p=${p}`;
        const inputs = () => ({
          x: f32(rand(s.M * s.K, 21), [s.M, s.K], xd),
          w: weight(wd, s.G * s.N, s.K, 22),
          bias: f32(rand(s.G * s.N, 23), [s.G * s.N]),
          a: f32(rand(s.G * s.r * s.K, 24, -0.5, 0.5), [s.G * s.r, s.K]),
          bm: f32(rand(s.G * s.N * s.r, 25, -0.5, 0.5), [s.G * s.N, s.r]),
        });
        const common = { scale: 2, dropout: p, seed: 77, offset: 5, groups: s.G };
        cases.push({
          name: `lora_fwd ${tag}`,
          tol,
          why,
          run(b) {
            const i = inputs();
            const { y, xa } = ops.loraForward(i.x, i.w, i.a, i.bm, { ...common, bias: i.bias, outDtype: 'f32', backend: b });
            return concat([arr(y), arr(xa)]);
          },
        });
        cases.push({
          name: `lora_bwd ${tag}`,
          tol,
          why,
          run(b) {
            const i = inputs();
            const { xa } = ops.loraForward(i.x, i.w, i.a, i.bm, { ...common, outDtype: 'f32', backend: 'ref' });
            const dy = f32(rand(s.M * s.G * s.N, 26), [s.M, s.G * s.N], xd);
            const da = f32(rand(s.G * s.r * s.K, 27), [s.G * s.r, s.K]);
            const db = f32(rand(s.G * s.N * s.r, 28), [s.G * s.N, s.r]);
            const { dx } = ops.loraBackward(dy, i.x, i.w, i.a, i.bm, xa, { ...common, da, db, dxDtype: 'f32', backend: b });
            return concat([arr(dx!), arr(da), arr(db)]);
          },
        });
      }
    }
  }
}

// ---- embedding, layernorm ----
for (const [M, C, V] of [[1, 8, 5], [7, 33, 50], [65, 130, 17]] as [number, number, number][]) {
  const ids = Array.from({ length: M }, (_, m) => (m * 7 + 3) % V);
  const pos = Array.from({ length: M }, (_, m) => m % 9);
  cases.push({
    name: `embedding f32 M=${M} C=${C} V=${V} +positions`,
    tol: 1e-12,
    why: 'one f32 add per element (ref adds in the same order)',
    run(b) {
      return arr(ops.embedding(i32(ids, [M]), f32(rand(V * C, 31), [V, C]), { positions: i32(pos, [M]), posTable: f32(rand(11 * C, 32), [11, C]), backend: b }));
    },
  });
  cases.push({
    name: `embedding bf16 table M=${M} C=${C} V=${V}`,
    tol: TOL_EXACT,
    why: WHY_EXACT + ' (bf16 rows widened exactly)',
    run: (b) => arr(ops.embedding(i32(ids, [M]), f32(rand(V * C, 31), [V, C], 'bf16'), { backend: b })),
  });
  cases.push({
    name: `embedding_bwd f32 M=${M} C=${C} V=${V}`,
    tol: 1e-12,
    why: 'f32 sums of repeated ids in token order',
    run(b) {
      const dt = f32(rand(V * C, 33), [V, C]);
      const dp = f32(rand(11 * C, 34), [11, C]);
      ops.embeddingBackward(i32(ids, [M]), f32(rand(M * C, 35), [M, C]), { dtable: dt, positions: i32(pos, [M]), dposTable: dp, backend: b });
      return concat([arr(dt), arr(dp)]);
    },
  });
  cases.push({
    name: `layernorm f32 M=${M} C=${C} affine`,
    tol: 1e-10,
    why: 'f32 statistics vs f64',
    run(b) {
      const r = ops.layerNorm(f32(rand(M * C, 36, -2, 3), [M, C]), { gamma: f32(rand(C, 37), [C]), beta: f32(rand(C, 38), [C]), backend: b });
      return concat([arr(r.y), arr(r.mean), arr(r.rstd)]);
    },
  });
  for (const affine of [true, false]) {
    cases.push({
      name: `layernorm_bwd f32 M=${M} C=${C} ${affine ? 'with dgamma/dbeta' : 'dx only'}`,
      tol: 1e-9,
      why: 'f32 reductions vs f64',
      run(b) {
        const x = f32(rand(M * C, 36, -2, 3), [M, C]);
        const gamma = f32(rand(C, 37), [C]);
        const st = ops.layerNorm(x, { gamma, backend: 'ref' });
        const dg = f32(rand(C, 39), [C]);
        const dbb = f32(rand(C, 40), [C]);
        const dx = ops.layerNormBackward(f32(rand(M * C, 41), [M, C]), x, st.mean, st.rstd, affine ? { gamma, dgamma: dg, dbeta: dbb, backend: b } : { gamma, backend: b });
        return affine ? concat([arr(dx), arr(dg), arr(dbb)]) : arr(dx);
      },
    });
  }
  // From the output: x̂ = (y - beta) / gamma (|gamma| >= 0.5 here). The ref's answer is also held
  // against the ref's input form: y is rounded to f32, so x̂ carries ~1e-7 relative error.
  cases.push({
    name: `layernorm_bwd from output f32 M=${M} C=${C} with dgamma/dbeta`,
    tol: 1e-9,
    why: 'f32 reductions vs f64 (x̂ recovered from the f32 output)',
    run(b) {
      const x = f32(rand(M * C, 36, -2, 3), [M, C]);
      const gamma = f32(Float32Array.from(rand(C, 37), (v) => (v >= 0 ? v + 0.5 : v - 0.5)), [C]);
      const beta = f32(rand(C, 38), [C]);
      const st = ops.layerNorm(x, { gamma, beta, backend: 'ref' });
      const dy = f32(rand(M * C, 41), [M, C]);
      const grads = (from: 'input' | 'output', be: string) => {
        const dg = f32(rand(C, 39), [C]), dbb = f32(rand(C, 40), [C]);
        const dx = from === 'output'
          ? ops.layerNormBackwardFromOutput(dy, st.y, gamma, st.rstd, { beta, dgamma: dg, dbeta: dbb, backend: be as 'ref' })
          : ops.layerNormBackward(dy, x, st.mean, st.rstd, { gamma, dgamma: dg, dbeta: dbb, backend: be as 'ref' });
        return concat([arr(dx), arr(dg), arr(dbb)]);
      };
      if (b === 'ref') expect(nmse(grads('output', 'ref'), grads('input', 'ref'))).toBeLessThan(1e-12);
      return grads('output', b);
    },
  });
}

// ---- attention ----
interface AttentionInputs {
  q: NativeTensor;
  k: NativeTensor;
  v: NativeTensor;
  pad: { kvLens?: NativeTensor; mask?: NativeTensor };
}
/** The attention forward (o, lse) and backward (dq, dk, dv with a kept O; dout [B, T, C] from `doutSeed`) cases on `make`'s inputs. */
function pushAttentionCases(tag: string, heads: number, make: () => AttentionInputs, doutShape: [number, number, number], doutSeed: number): void {
  cases.push({
    name: `attention ${tag}`,
    tol: 1e-10,
    why: 'streaming f32 softmax vs f64 full-row softmax',
    run(b) {
      const { q, k, v, pad } = make();
      const r = ops.attention(q, k, v, { heads, ...pad, backend: b });
      return concat([arr(r.o), arr(r.lse)]);
    },
  });
  cases.push({
    name: `attention_bwd ${tag}`,
    tol: 1e-9,
    why: 'f32 accumulation of dK/dV over queries vs f64',
    run(b) {
      const { q, k, v, pad } = make();
      const r = ops.attention(q, k, v, { heads, ...pad, backend: 'ref' });
      const g = ops.attentionBackward(f32(rand(doutShape[0] * doutShape[1] * doutShape[2], doutSeed), doutShape), q, k, v, r.o, r.lse, { heads, ...pad, backend: b });
      return concat([arr(g.dq), arr(g.dk), arr(g.dv)]);
    },
  });
}

const attnShapes: { B: number; T: number; H: number; D: number; pad: 'none' | 'kvLens' | 'mask'; fused: boolean }[] = [
  { B: 1, T: 1, H: 1, D: 8, pad: 'none', fused: false },
  { B: 2, T: 7, H: 2, D: 16, pad: 'kvLens', fused: true },
  { B: 2, T: 33, H: 3, D: 8, pad: 'mask', fused: true },
  { B: 1, T: 130, H: 2, D: 32, pad: 'none', fused: false },
  // The cpu kernel's 64×64 blocking: T a multiple of the block, T past one block with a ragged
  // tail, D not a multiple of 16 (24, 8) and over 64 (80: two column panels).
  { B: 1, T: 128, H: 2, D: 64, pad: 'none', fused: true },
  { B: 3, T: 97, H: 2, D: 24, pad: 'kvLens', fused: false },
  { B: 2, T: 70, H: 1, D: 80, pad: 'mask', fused: false },
  { B: 2, T: 65, H: 2, D: 8, pad: 'kvLens', fused: true },
];
// q/k/v in bf16 (o, lse and the grads f32): the same f32 math on the exactly widened values, so
// each backend's bf16 result also equals its own f32 result on widened copies (checked bit for
// bit; on cpu, whose scores come from the bf16 pairs through vdpbf16ps, to NMSE 1e-12).
const widenedMismatches = (a: ArrayLike<number>, b: ArrayLike<number>): number[] =>
  Array.from(a, (x, i) => (Object.is(x, b[i]) || (Number.isNaN(x) && Number.isNaN(b[i])) ? 0 : 1));
const widen = (t: NativeTensor) => ops.cast(t, 'f32');
for (const s of attnShapes) for (const dt of ['f32', 'bf16'] as const) {
  const C = s.H * s.D;
  const tag = `${dt} B=${s.B} T=${s.T} H=${s.H} D=${s.D} pad=${s.pad}${s.fused ? ' qkv-slices' : ''}`;
  // widened: the same (bf16) values widened to f32 before any slicing.
  const make = (widened = false) => {
    const w = (t: NativeTensor) => (widened ? widen(t) : t);
    let q: NativeTensor, k: NativeTensor, v: NativeTensor;
    if (s.fused) {
      const qkv = w(f32(rand(s.B * s.T * 3 * C, 51), [s.B, s.T, 3 * C], dt));
      [q, k, v] = [0, 1, 2].map((g) => qkv.narrow(2, g * C, C));
    } else {
      q = w(f32(rand(s.B * s.T * C, 52), [s.B, s.T, C], dt));
      k = w(f32(rand(s.B * s.T * C, 53), [s.B, s.T, C], dt));
      v = w(f32(rand(s.B * s.T * C, 54), [s.B, s.T, C], dt));
    }
    const pad: { kvLens?: NativeTensor; mask?: NativeTensor } = {};
    if (s.pad === 'kvLens') pad.kvLens = i32(Array.from({ length: s.B }, (_, b) => s.T - 2 * b), [s.B]);
    if (s.pad === 'mask') pad.mask = i32(Array.from({ length: s.B * s.T }, (_, i) => (i % s.T < 3 && Math.floor(i / s.T) === 1 ? 0 : 1)), [s.B, s.T]);
    return { q, k, v, pad };
  };
  pushAttentionCases(tag, s.H, make, [s.B, s.T, C], 55);
  cases.push({
    name: `attention_bwd ${tag}, no kept O (D recomputed from q, k, v, lse)`,
    tol: 1e-9,
    why: 'f32 accumulation of D and of dK/dV over queries vs f64',
    run(b) {
      const { q, k, v, pad } = make();
      const r = ops.attention(q, k, v, { heads: s.H, ...pad, backend: 'ref' });
      const g = ops.attentionBackward(f32(rand(s.B * s.T * C, 55), [s.B, s.T, C]), q, k, v, null, r.lse, { heads: s.H, ...pad, backend: b });
      return concat([arr(g.dq), arr(g.dk), arr(g.dv)]);
    },
  });
  if (dt === 'bf16') {
    cases.push({
      name: `attention fwd+bwd ${tag} == f32 on widened q/k/v (mismatch count; cpu: NMSE <= 1e-12)`,
      tol: TOL_EXACT,
      why: WHY_EXACT + '; cpu forms S = K·Qᵀ from the bf16 pairs with vdpbf16ps (exact products, another order of the f32 sums)',
      run(b) {
        const { q, k, v, pad } = make();
        const { q: qf, k: kf, v: vf } = make(true);
        const r = ops.attention(q, k, v, { heads: s.H, ...pad, backend: b });
        const rf = ops.attention(qf, kf, vf, { heads: s.H, ...pad, backend: b });
        const dout = f32(rand(s.B * s.T * C, 55), [s.B, s.T, C]);
        const g = ops.attentionBackward(dout, q, k, v, r.o, r.lse, { heads: s.H, ...pad, backend: b });
        const gf = ops.attentionBackward(dout, qf, kf, vf, r.o, r.lse, { heads: s.H, ...pad, backend: b });
        const got = concat([arr(r.o), arr(r.lse), arr(g.dq), arr(g.dk), arr(g.dv)]);
        const want = concat([arr(rf.o), arr(rf.lse), arr(gf.dq), arr(gf.dk), arr(gf.dv)]);
        if (b === 'cpu') return new Float64Array(got.length).fill(nmse(got, want) <= 1e-12 ? 0 : 1);
        return widenedMismatches(got, want);
      },
    });
  }
}

// ---- attention: padding against the cpu kernel's 64-key blocks ----
// kv_len ending mid-block, on a block edge and at 0 (a batch without keys: o = 0, lse = -inf), and
// a mask that hides a whole key block and keys on both sides of a block edge.
for (const s of [
  { B: 4, T: 150, H: 2, D: 24, kvLens: [150, 100, 64, 0] },
  { B: 2, T: 140, H: 3, D: 16, masked: true },
]) for (const dt of ['f32', 'bf16'] as const) {
  const C = s.H * s.D;
  const tag = `${dt} B=${s.B} T=${s.T} H=${s.H} D=${s.D} ${s.kvLens ? `kvLens=${s.kvLens.join(',')}` : 'mask=block-holes'}`;
  const make = () => {
    const q = f32(rand(s.B * s.T * C, 56, -2, 2), [s.B, s.T, C], dt);
    const k = f32(rand(s.B * s.T * C, 57, -2, 2), [s.B, s.T, C], dt);
    const v = f32(rand(s.B * s.T * C, 58), [s.B, s.T, C], dt);
    const pad: { kvLens?: NativeTensor; mask?: NativeTensor } = {};
    if (s.kvLens) pad.kvLens = i32(s.kvLens, [s.B]);
    if (s.masked) pad.mask = i32(Array.from({ length: s.B * s.T }, (_, i) => { const j = i % s.T; return (j >= 64 && j < 128 && i < s.T) || (j >= 60 && j < 70) || j % 7 === 3 ? 0 : 1; }), [s.B, s.T]);
    return { q, k, v, pad };
  };
  pushAttentionCases(tag, s.H, make, [s.B, s.T, C], 59);
}

// ---- attention: grouped KV heads, a query offset, a KV cache ----
// T query rows at positions qOffset.. over Tk key rows with Hkv < H KV heads (GQA; Hkv = 1 is
// multi-query), across the cpu kernel's 64-row blocks on both sides (queries and keys), and the
// decode form: the new rows appended to a [B, S, Ckv] cache at `offset`, attention over the cache
// (checked: o, lse and the cache contents, so the append itself is compared too).
for (const s of [
  { B: 2, T: 7, Tk: 7, H: 4, Hkv: 2, D: 8, off: 0, pad: 'kvLens' },
  { B: 2, T: 70, Tk: 150, H: 4, Hkv: 2, D: 24, off: 80, pad: 'mask' },
  { B: 1, T: 1, Tk: 33, H: 6, Hkv: 1, D: 16, off: 32, pad: 'none' },
  { B: 3, T: 5, Tk: 68, H: 3, Hkv: 3, D: 32, off: 40, pad: 'mask' },
] as const) for (const dt of ['f32', 'bf16'] as const) {
  const C = s.H * s.D, Ckv = s.Hkv * s.D;
  const tag = `${dt} B=${s.B} T=${s.T} Tk=${s.Tk} H=${s.H} Hkv=${s.Hkv} D=${s.D} qOffset=${s.off} pad=${s.pad}`;
  const padFor = (Tk: number) => {
    const pad: { kvLens?: NativeTensor; mask?: NativeTensor } = {};
    if (s.pad === 'kvLens') pad.kvLens = i32(Array.from({ length: s.B }, (_, b) => Tk - 2 * b), [s.B]);
    if (s.pad === 'mask') pad.mask = i32(Array.from({ length: s.B * Tk }, (_, i) => (i % Tk < 3 && Math.floor(i / Tk) === 1) || i % 11 === 5 ? 0 : 1), [s.B, Tk]);
    return pad;
  };
  const make = () => ({
    q: f32(rand(s.B * s.T * C, 151, -2, 2), [s.B, s.T, C], dt),
    k: f32(rand(s.B * s.Tk * Ckv, 152, -2, 2), [s.B, s.Tk, Ckv], dt),
    v: f32(rand(s.B * s.Tk * Ckv, 153), [s.B, s.Tk, Ckv], dt),
    pad: padFor(s.Tk),
  });
  cases.push({
    name: `attention ${tag}`,
    tol: 1e-10,
    why: 'streaming f32 softmax vs f64 full-row softmax',
    run(b) {
      const { q, k, v, pad } = make();
      const r = ops.attention(q, k, v, { heads: s.H, qOffset: s.off, ...pad, backend: b });
      return concat([arr(r.o), arr(r.lse)]);
    },
  });
  cases.push({
    name: `attention_bwd ${tag} (with and without a kept O)`,
    tol: 1e-9,
    why: 'f32 accumulation of dK/dV over queries and grouped heads vs f64',
    run(b) {
      const { q, k, v, pad } = make();
      const r = ops.attention(q, k, v, { heads: s.H, qOffset: s.off, ...pad, backend: 'ref' });
      const dout = f32(rand(s.B * s.T * C, 154), [s.B, s.T, C]);
      const g = ops.attentionBackward(dout, q, k, v, r.o, r.lse, { heads: s.H, qOffset: s.off, ...pad, backend: b });
      const g2 = ops.attentionBackward(dout, q, k, v, null, r.lse, { heads: s.H, qOffset: s.off, ...pad, backend: b });
      return concat([arr(g.dq), arr(g.dk), arr(g.dv), arr(g2.dq), arr(g2.dk), arr(g2.dv)]);
    },
  });
  const S = s.Tk + 3;  // cache capacity past the last position used
  cases.push({
    name: `attention with a KV cache ${dt} B=${s.B} T=${s.T} S=${S} H=${s.H} Hkv=${s.Hkv} D=${s.D} offset=${s.off} pad=${s.pad} (o, lse, cache)`,
    tol: 1e-10,
    why: 'streaming f32 softmax vs f64 full-row softmax; the appended rows are copied exactly',
    run(b) {
      const q = f32(rand(s.B * s.T * C, 155, -2, 2), [s.B, s.T, C], dt);
      const kv = f32(rand(s.B * s.T * 2 * Ckv, 156, -2, 2), [s.B, s.T, 2 * Ckv], dt);
      const [k, v] = [0, 1].map((g) => kv.narrow(2, g * Ckv, Ckv));
      const cache = { k: f32(rand(s.B * S * Ckv, 157, -2, 2), [s.B, S, Ckv], dt), v: f32(rand(s.B * S * Ckv, 158), [s.B, S, Ckv], dt), offset: s.off };
      const r = ops.attention(q, k, v, { heads: s.H, cache, ...padFor(S), backend: b });
      return concat([arr(r.o), arr(r.lse), arr(ops.cast(cache.k, 'f32', { backend: 'ref' })), arr(ops.cast(cache.v, 'f32', { backend: 'ref' }))]);
    },
  });
}

// ---- Llama-shaped ops: RMSNorm (+ QK-norm over head_dim), RoPE, SwiGLU ----
// RMSNorm rows over 16-lane tails (C = 7, 33, 130) and the QK-norm form: a column slice of a fused
// qkv buffer normalised per head (width = head dim, rstd per (row, head)); dw accumulates onto a
// nonzero start. RoPE on a q slice with per-row positions (a left-padded row's ids and a decode
// offset), forward and inverse (the backward), in place. SwiGLU on the two halves of a gate_up buffer.
for (const [M, N, width, w] of [[1, 7, 7, true], [9, 33, 33, true], [17, 130, 130, false], [6, 96, 24, true]] as [number, number, number, boolean][]) {
  const fused = width !== N;  // QK-norm: q = columns [0, N) of a [M, 3N] buffer
  const tag = `M=${M} N=${N} width=${width}${w ? ' +w' : ''}${fused ? ' (QK-norm on a qkv slice)' : ''}`;
  const make = () => {
    const x = fused ? f32(rand(M * 3 * N, 161, -2, 2), [M, 3 * N]).narrow(1, 0, N) : f32(rand(M * N, 161, -2, 2), [M, N]);
    return { x, w: w ? f32(rand(width, 162), [width]) : undefined };
  };
  cases.push({
    name: `rmsnorm ${tag}`,
    tol: 1e-12,
    why: 'f32 sum of squares and products vs f64',
    run(b) {
      const { x, w: wt } = make();
      const r = ops.rmsNorm(x, { w: wt, width, eps: 1e-6, backend: b });
      return concat([arr(r.y), arr(r.rstd)]);
    },
  });
  cases.push({
    name: `rmsnorm_bwd ${tag} (dx, dw +=)`,
    tol: 1e-11,
    why: 'f32 row sums and a column sum over rows vs f64',
    run(b) {
      const { x, w: wt } = make();
      const r = ops.rmsNorm(x, { w: wt, width, backend: 'ref' });
      const dw = w ? f32(rand(width, 163), [width]) : undefined;
      const dx = ops.rmsNormBackward(f32(rand(M * N, 164), [M, N]), x, r.rstd, { w: wt, width, dw, backend: b });
      return concat([arr(dx), dw ? arr(dw) : []]);
    },
  });
}
for (const [M, H, D] of [[1, 1, 2], [5, 2, 8], [9, 3, 64], [4, 2, 40]] as [number, number, number][]) {
  const C = H * D;
  const inv = f32(ops.ropeInvFreq(D, 10000), [D / 2]);
  const positions = i32(Array.from({ length: M }, (_, m) => (m === 1 ? 1 : m + 37)), [M]);
  for (const inverse of [false, true]) {
    cases.push({
      name: `rope${inverse ? ' inverse (backward)' : ''} M=${M} H=${H} D=${D} (q slice of qkv; and in place)`,
      tol: 1e-13,
      why: 'cos/sin of the same f32 angle rounded to f32; f32 products vs f64 (a few ulp)',
      run(b) {
        const q = f32(rand(M * 3 * C, 165, -2, 2), [M, 3 * C]).narrow(1, 0, C);
        const y = ops.rope(q, positions, inv, { heads: H, inverse, backend: b });
        const z = f32(rand(M * C, 166), [M, C]);
        ops.rope(z, positions, inv, { heads: H, inverse, out: z, backend: b });
        return concat([arr(y), arr(z)]);
      },
    });
  }
}
// bf16 gate|up (a bf16 linear's output under autocast) is widened exactly: the same f32 math.
for (const [M, F, dt] of [[1, 7, 'f32'], [9, 33, 'f32'], [17, 130, 'f32'], [9, 33, 'bf16'], [17, 130, 'bf16']] as [number, number, 'f32' | 'bf16'][]) {
  const halves = () => {
    const gu = f32(rand(M * 2 * F, 167, -6, 6), [M, 2 * F], dt);
    return [gu.narrow(1, 0, F), gu.narrow(1, F, F)];
  };
  cases.push({
    name: `swiglu ${dt} M=${M} F=${F} (gate/up halves of one buffer)`,
    tol: 1e-12,
    why: 'f32 sigmoid (exp ~1 ulp) vs f64',
    run(b) {
      const [g, u] = halves();
      return arr(ops.swiGlu(g, u, { backend: b }));
    },
  });
  cases.push({
    name: `swiglu_bwd ${dt} M=${M} F=${F}`,
    tol: 1e-12,
    why: 'f32 sigmoid and products vs f64',
    run(b) {
      const [g, u] = halves();
      const r = ops.swiGluBackward(g, u, f32(rand(M * F, 168), [M, F]), { backend: b });
      return concat([arr(r.dgate), arr(r.dup)]);
    },
  });
}

// ---- elementwise ----
for (const n of [1, 7, 33, 65, 1030, 70001]) {
  cases.push({ name: `relu f32 n=${n}`, tol: TOL_EXACT, why: WHY_EXACT, run: (b) => arr(ops.relu(f32(rand(n, 61), [n]), { backend: b })) });
  cases.push({
    name: `relu_bwd f32 n=${n}`,
    tol: TOL_EXACT,
    why: WHY_EXACT,
    run: (b) => arr(ops.reluBackward(ops.relu(f32(rand(n, 61), [n]), { backend: 'ref' }), f32(rand(n, 62), [n]), { backend: b })),
  });
  cases.push({
    name: `relu_mask f32 n=${n} (y and keep bits)`,
    tol: TOL_EXACT,
    why: WHY_EXACT,
    run: (b) => {
      const { y, bits } = ops.reluMask(f32(rand(n, 61), [n]), { backend: b });
      return concat([arr(y), unpackBits(bits, n)]);
    },
  });
  cases.push({
    name: `relu_mask_bwd f32 n=${n}`,
    tol: TOL_EXACT,
    why: WHY_EXACT,
    run: (b) => arr(ops.reluMaskBackward(ops.reluMask(f32(rand(n, 61), [n]), { backend: 'ref' }).bits, f32(rand(n, 62), [n]), { backend: b })),
  });
  cases.push({ name: `add f32 n=${n} alpha=-0.5`, tol: TOL_EXACT, why: WHY_EXACT + ' (one fma vs mul+add may differ by 1 ulp: tol 0 holds for fma-free values)', run: (b) => arr(ops.add(f32(rand(n, 63), [n]), f32(Float32Array.from(rand(n, 64), (v) => Math.round(v * 64) / 64), [n]), { alpha: -0.5, backend: b })) });
  cases.push({ name: `scale f32 n=${n}`, tol: TOL_EXACT, why: WHY_EXACT, run: (b) => arr(ops.scale(f32(rand(n, 65), [n]), 0.75, { backend: b })) });
  for (const [from, to] of [['f32', 'bf16'], ['f32', 'f16'], ['bf16', 'f32'], ['f16', 'bf16']] as const) {
    cases.push({ name: `cast ${from}->${to} n=${n}`, tol: TOL_EXACT, why: WHY_EXACT + ' (RNE)', run: (b) => arr(ops.cast(f32(rand(n, 66, -70000, 70000), [n], from), to, { backend: b })) });
  }
  cases.push({ name: `dropout f32 n=${n} p=0.3`, tol: TOL_EXACT, why: 'same Philox mask on every backend', run: (b) => arr(ops.dropout(f32(rand(n, 67), [n]), 0.3, { seed: 1234, offset: 3, backend: b })) });
}

// ---- cross-entropy ----
for (const wd of ['f32', 'bf16', 'nf4', 'bf16p'] as const) {
  for (const [M, C, V, chunk] of [[1, 64, 7, 4], [7, 64, 50, 16], [33, 128, 130, 64], [65, 64, 1000, 256], [9, 64, 208, 64]] as [number, number, number, number][]) {
    if ((wd === 'bf16p') !== (V === 208)) continue;
    const tgt = Array.from({ length: M }, (_, m) => (m % 5 === 4 ? -100 : (m * 13 + 1) % V));
    const [tol, why] = tolFor('f32', wd);
    cases.push({
      name: `cross_entropy h=f32 W=${wd} M=${M} C=${C} V=${V} chunk=${chunk} (+ignored rows)`,
      tol: Math.max(tol, 1e-9),
      why: `${why}; online log-sum-exp in f32`,
      run(b) {
        const h = f32(rand(M * C, 71), [M, C]);
        const w = weight(wd, V, C, 72);
        const r = ops.crossEntropy(h, w, i32(tgt, [M]), { chunk, gradScale: 0.5, logits: true, backend: b });
        return concat([[r.loss, r.count], arr(r.dh!), arr(r.logits!)]);
      },
    });
  }
}

// ---- optimiser ----
for (const n of [1, 33, 1030]) {
  cases.push({
    name: `adamw f32 n=${n} step=3 wd=0.01`,
    tol: 1e-12,
    why: 'f32 update vs f64 update',
    run(b) {
      const p = f32(rand(n, 81), [n]);
      const g = f32(rand(n, 82), [n]);
      const m = f32(rand(n, 83, -0.1, 0.1), [n]);
      const v = f32(rand(n, 84, 0, 0.1), [n]);
      ops.adamw(p, g, m, v, { lr: 1e-2, step: 3, weightDecay: 0.01, gradScale: 0.7, backend: b });
      return concat([arr(p), arr(m), arr(v)]);
    },
  });
  cases.push({
    name: `sum_squares (grad norm) f32 n=${n}`,
    tol: 1e-14,
    why: 'f64 accumulation in both',
    run: (b) => [ops.gradNorm([f32(rand(n, 85), [n]), f32(rand(3, 86), [3])], { backend: b })],
  });
}

// Decoding through the KV cache is the same computation as the full causal attention: a prompt of
// P tokens appended at offset 0, then one token at a time at offsets P, P+1, ..., reproduces the
// full forward's rows (GQA 4/2 heads, a left-padded batch row masked out of the keys).
describe('KV-cached decoding equals the full causal attention, step by step', () => {
  for (const b of ['ref', 'cpu', 'emu'] as const) {
    it(b, () => {
      const [B, T, P, H, Hkv, D] = [2, 9, 5, 4, 2, 8];
      const C = H * D, Ckv = Hkv * D, S = 12;
      const q = rand(B * T * C, 171), k = rand(B * T * Ckv, 172), v = rand(B * T * Ckv, 173);
      const maskT = Array.from({ length: B * T }, (_, i) => (i >= T && i < T + 2 ? 0 : 1));  // row 1: 2 left pads
      let full: Float32Array;
      try {
        full = arr(ops.attention(f32(q, [B, T, C]), f32(k, [B, T, Ckv]), f32(v, [B, T, Ckv]), { heads: H, mask: i32(maskT, [B, T]), backend: b }).o);
      } catch (e) {
        if (isUnsupported(e)) return;
        throw e;
      }
      const rowsOf = (src: Float32Array, w: number, t0: number, n: number) => {
        const out = new Float32Array(B * n * w);
        for (let bb = 0; bb < B; ++bb) out.set(src.subarray((bb * T + t0) * w, (bb * T + t0 + n) * w), bb * n * w);
        return out;
      };
      const cache = { k: f32(new Float32Array(B * S * Ckv), [B, S, Ckv]), v: f32(new Float32Array(B * S * Ckv), [B, S, Ckv]), offset: 0 };
      const maskS = i32(Array.from({ length: B * S }, (_, i) => (i >= S && i < S + 2 ? 0 : 1)), [B, S]);
      const got = new Float32Array(B * T * C);
      for (const [t0, n] of [[0, P], ...Array.from({ length: T - P }, (_, i) => [P + i, 1])]) {
        cache.offset = t0;
        const o = arr(ops.attention(f32(rowsOf(q, C, t0, n), [B, n, C]), f32(rowsOf(k, Ckv, t0, n), [B, n, Ckv]), f32(rowsOf(v, Ckv, t0, n), [B, n, Ckv]), { heads: H, cache, mask: maskS, backend: b }).o);
        for (let bb = 0; bb < B; ++bb) got.set(o.subarray(bb * n * C, (bb + 1) * n * C), (bb * T + t0) * C);
      }
      const err = nmse(got, full);
      console.log(`${b} cached decode vs full attention: nmse ${err.toExponential(1)} (tol 1e-12: the same keys in the same order; the cpu kernel's blocks may split them differently)`);
      expect(err).toBeLessThanOrEqual(1e-12);
    });
  }
});

describe('op matrix: every backend against ref', () => {
  it(`${cases.length} cases`, () => {
    const failures: string[] = [];
    let compared = 0;
    for (const c of cases) {
      const want = c.run('ref');
      for (const b of otherBackends) {
        let got: ArrayLike<number>;
        try {
          got = c.run(b);
        } catch (e) {
          if (isUnsupported(e)) {
            console.log(`${b} ${c.name}: not supported (${(e as Error).message.split(': ').pop()})`);
            continue;
          }
          // The cases make host tensors; the cuda backend takes device tensors only. With a GPU the
          // op matrix runs on cuda with 'cuda' tensors in cuda-ops.test.ts (emu-ops, LORA_OPS_TARGET=cuda).
          if (b === 'cuda' && (e as { code?: string }).code === 'ERR_LORA_DEVICE') {
            console.log(`${b} ${c.name}: host tensors (the cuda matrix runs in cuda-ops.test.ts)`);
            continue;
          }
          throw e;
        }
        const err = nmse(got, want);
        const ok = err <= c.tol;
        compared++;
        console.log(`${b} ${c.name}: nmse ${err.toExponential(1)} (tol ${c.tol.toExponential(0)}: ${c.why}) ${ok ? 'ok' : 'FAIL'}`);
        if (!ok) failures.push(`${b} ${c.name}: nmse ${err}`);
      }
    }
    expect(failures).toEqual([]);
    expect(compared).toBeGreaterThan(0);
  });
});
