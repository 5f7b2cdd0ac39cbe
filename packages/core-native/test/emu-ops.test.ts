// The op matrix of the CUDA kernels run on the CPU emulator (`emu`) against the scalar reference
// (`ref`), on small ragged shapes (several k-tiles, tails in M, N and K). One line per case.
//
// Tolerances (normalised MSE, Σ(a-b)² / Σb²):
//  - TC (5e-5): tensor-core matmuls (any bf16 activation, or a bf16/int8/int4/NF4 weight; LoRA and
//    linear + CE built on them). The kernels
//    round both operands to bf16 (8-bit mantissa, relative rounding error up to 2^-9) and
//    accumulate in f32; the reference multiplies the unrounded values in f64. For random data the
//    expected NMSE is about 2·(2^-9/√3)² ≈ 2.5e-6; 5e-5 leaves 20× headroom while a wrong fragment,
//    a lost k-tile or a missed tail shows up as 1e-3 or more.
//  - F32 (1e-10): f32 kernels whose only difference is summation order / float vs double
//    intermediates: the f32 CUDA-core GEMM that serves problems whose operands are all f32-exact
//    (f32 activations with f32/f16 weights, as ops.h promises f32 accuracy there), layernorm,
//    attention's f32 streaming softmax, AdamW, Σx².
//  - exact: elementwise ops, casts, dropout masks (same Philox mapping), quantized codes.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { native } from '../lib/index.js';
import { mulberry32 } from './ops-helpers.js';

const addon = native() as any;
const { Tensor } = addon;
// LORA_OPS_TARGET=cuda runs the same matrix on the real GPU with 'cuda' tensors (cuda-ops.test.ts
// does that in a child process when a GPU is usable); the default is the emulator.
const target = process.env.LORA_OPS_TARGET === 'cuda' ? 'cuda' : 'emu';
const emuStatus = (addon.backends() as { name: string; usable: boolean; reason: string }[]).find((b) => b.name === target);
const hasEmu = !!emuStatus?.usable;
const order = process.env.LORA_EMU_ORDER ?? 'forward';
const tag = target === 'emu' ? `emu ${order}` : 'cuda';

const TC = 5e-5;
const F32 = 1e-10;

function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; ++i) a[i] = (r() * 2 - 1) * scale;
  return a;
}
function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let num = 0, den = 0;
  for (let i = 0; i < want.length; ++i) {
    const d = Number(got[i]) - Number(want[i]);
    num += d * d;
    den += Number(want[i]) * Number(want[i]);
  }
  if (!Number.isFinite(num)) return Number.POSITIVE_INFINITY;
  return den > 0 ? num / den : num;
}

type Outs = Record<string, ArrayLike<number>>;
// Runs `fn` once per backend with a tensor factory on that backend's device and returns the
// named outputs as host arrays.
function both(fn: (backend: string, T: (data: Float32Array | Int32Array, shape: number[], dtype?: string) => any) => Outs) {
  const run = (backend: string) => {
    const dev = backend === target ? target : 'cpu';
    const made: any[] = [];
    const T = (data: Float32Array | Int32Array, shape: number[], dtype?: string) => {
      const t = Tensor.fromArray(data, shape, dtype ?? (data instanceof Int32Array ? 'i32' : 'f32'), dev);
      made.push(t);
      return t;
    };
    try {
      const o = fn(backend, T);
      const r: Outs = {};
      for (const [k, v] of Object.entries(o)) r[k] = (v as any)?.toArray ? Array.from((v as any).toArray() as ArrayLike<number>) : v;
      return r;
    } finally {
      for (const t of made) t.dispose();
    }
  };
  return { ref: run('ref'), emu: run(target) };
}

const lines: string[] = [];
function check(name: string, fn: Parameters<typeof both>[0], tol: Record<string, number> | number) {
  const t0 = performance.now();
  const { ref, emu } = both(fn);
  const ms = (performance.now() - t0).toFixed(0);
  const parts: string[] = [];
  let ok = true;
  for (const k of Object.keys(ref)) {
    const e = nmse(emu[k], ref[k]);
    const lim = typeof tol === 'number' ? tol : (tol[k] ?? 0);
    const pass = lim === 0 ? e === 0 : e <= lim;
    ok &&= pass;
    parts.push(`${k} nmse=${e.toExponential(2)}${lim === 0 ? ' (exact)' : ` (<= ${lim.toExponential(0)})`}${pass ? '' : ' FAIL'}`);
  }
  const line = `[${tag}] ${ok ? 'ok  ' : 'FAIL'} ${name.padEnd(44)} ${parts.join(', ')}  ${ms} ms`;
  lines.push(line);
  console.log(line);
  expect(ok, line).toBe(true);
}

const quantized = (T: any, w: Float32Array, shape: number[], dtype: string, backend: string) => {
  if (dtype === 'f32' || dtype === 'f16' || dtype === 'bf16') return T(w, shape, dtype);
  const src = Tensor.fromArray(w, shape, 'f32');
  const q = addon.opQuantize(src, dtype, 64, 'ref');
  src.dispose();
  const out = backend === target ? q.to(target) : q;
  if (out !== q) q.dispose();
  return out;
};

describe.skipIf(!hasEmu)(`${target} backend vs ref (LORA_EMU_ORDER=${order})`, () => {
  it.skipIf(target !== 'emu')('reports the emu backend usable and the cuda backend with a reason', () => {
    const list = addon.backends() as { name: string; usable: boolean; reason: string }[];
    const cuda = list.find((b) => b.name === 'cuda')!;
    console.log(`[emu] backends: ${list.map((b) => `${b.name}=${b.usable ? 'usable' : `no (${b.reason})`}`).join('; ')}`);
    expect(emuStatus!.usable).toBe(true);
    if (!cuda.usable) expect(cuda.reason).toMatch(/CUDA unavailable/);
  });

  it('answers "not supported" with the reason for head dims above 128', () => {
    const B = 1, T_ = 3, H = 1, D = 160;
    using q = Tensor.fromArray(randn(B * T_ * D, 1), [B, T_, D], 'f32', target);
    using o = Tensor.fromArray(new Float32Array(B * T_ * D), [B, T_, D], 'f32', target);
    using lse = Tensor.fromArray(new Float32Array(B * H * T_), [B, H, T_], 'f32', target);
    let err: any;
    try {
      addon.opAttention(q, q, q, o, lse, H, null, null, null, target);
    } catch (e) {
      err = e;
    }
    console.log(`[${tag}] attention D=${D}: ${err?.code}: ${err?.message}`);
    expect(err?.code).toBe('ERR_LORA_UNSUPPORTED');
    expect(String(err?.message)).toMatch(/head dim 160 > 128/);
  });

  describe('matmuls (bf16 tensor cores)', () => {
    const M = 37, N = 70;
    for (const wd of ['f32', 'f16', 'bf16', 'i8', 'int4', 'nf4']) {
      for (const xd of ['f32', 'bf16']) {
        const K = wd === 'int4' || wd === 'nf4' ? 128 : 75;
        it(`matmul_xwt x=${xd} w=${wd}`, () => {
          const x = randn(M * K, 1), w = randn(N * K, 2), b = randn(N, 3), y0 = randn(M * N, 4);
          check(`matmul_xwt ${M}x${K}x${N} x=${xd} w=${wd} +bias +acc`, (be, T) => {
            const y = T(y0, [M, N], xd === 'bf16' ? 'bf16' : 'f32');
            const wt = quantized(T, w, [N, K], wd, be);
            addon.opMatmulXWt(T(x, [M, K], xd), wt, T(b, [N]), y, true, be);
            if (wt.dtype !== 'f32' && wt.dtype !== 'f16' && wt.dtype !== 'bf16') wt.dispose();
            return { y };
          }, xd === 'f32' && (wd === 'f32' || wd === 'f16') ? F32 : TC);
        });
      }
    }
    for (const wd of ['f32', 'bf16', 'nf4', 'i8']) {
      it(`matmul_dyw w=${wd}`, () => {
        const K = wd === 'nf4' ? 128 : 75;
        const dy = randn(M * N, 5), w = randn(N * K, 6), dx0 = randn(M * K, 7);
        check(`matmul_dyw ${M}x${N}x${K} w=${wd} +acc`, (be, T) => {
          const dx = T(dx0, [M, K]);
          const wt = quantized(T, w, [N, K], wd, be);
          addon.opMatmulDYW(T(dy, [M, N]), wt, dx, true, be);
          return { dx };
        }, wd === 'f32' ? F32 : TC);
      });
    }
    for (const xd of ['f32', 'bf16']) {
      it(`matmul_dw ${xd}`, () => {
        const K = 75, Mb = 45;
        const dy = randn(Mb * N, 8), x = randn(Mb * K, 9), dw0 = randn(N * K, 10), db0 = randn(N, 11);
        check(`matmul_dw ${Mb}x${N}x${K} ${xd} +dbias`, (be, T) => {
          const dw = T(dw0, [N, K]), db = T(db0, [N]);
          addon.opMatmulDW(T(dy, [Mb, N], xd), T(x, [Mb, K], xd), dw, db, be);
          return { dw, db };
        }, { dw: xd === 'f32' ? F32 : TC, db: F32 });
      });
    }
  });

  describe('quantization', () => {
    for (const dt of ['i8', 'int4', 'nf4']) {
      it(`quantize + dequantize ${dt}`, () => {
        const w = randn(6 * 128, 12, 0.5);
        check(`quantize ${dt} 6x128 (block 64)`, (be, T) => {
          const q = addon.opQuantize(T(w, [6, 128]), dt, 64, be);
          const r = { codes: Array.from(q.bytes() as Uint8Array), scales: q.scales() as Float32Array };
          q.dispose();
          return r;
        }, 0);
        check(`dequantize ${dt} 6x128`, (be, T) => {
          const q = quantized(T, w, [6, 128], dt, be);
          const d = addon.opDequantize(q, be);
          return { w: d };
        }, 1e-14);
      });
    }
  });

  describe('fused LoRA (tensor cores)', () => {
    const M = 37, K = 75, N = 40, r = 4, G = 3;
    for (const [p, wd] of [[0, 'f32'], [0.25, 'f32'], [0.25, 'bf16']] as const) {
      it(`lora fwd/bwd G=${G} dropout=${p} w=${wd}`, () => {
        const tol = wd === 'f32' ? F32 : TC;
        const x = randn(M * K, 20), w = randn(G * N * K, 21), bias = randn(G * N, 22), a = randn(G * r * K, 23, 0.3),
          b = randn(G * N * r, 24, 0.3), dy = randn(M * G * N, 25), dx0 = randn(M * K, 26), da0 = randn(G * r * K, 27),
          db0 = randn(G * N * r, 28);
        check(`lora_fwd ${M}x${K} N=${N} r=${r} G=${G} p=${p} w=${wd}`, (be, T) => {
          const y = T(new Float32Array(M * G * N), [M, G * N]), xa = T(new Float32Array(M * G * r), [M, G * r]);
          addon.opLoraForward(T(x, [M, K]), T(w, [G * N, K], wd), T(bias, [G * N]), T(a, [G * r, K]), T(b, [G * N, r]), y, xa, 2.0, p, 1234, 5, G, be);
          return { y, xa };
        }, { y: tol, xa: F32 });
        check(`lora_bwd ${M}x${K} N=${N} r=${r} G=${G} p=${p} w=${wd} +acc`, (be, T) => {
          const xt = T(x, [M, K]), at = T(a, [G * r, K]), bt = T(b, [G * N, r]);
          const y = T(new Float32Array(M * G * N), [M, G * N]), xa = T(new Float32Array(M * G * r), [M, G * r]);
          addon.opLoraForward(xt, T(w, [G * N, K], wd), null, at, bt, y, xa, 2.0, p, 1234, 5, G, 'ref');
          const dx = T(dx0, [M, K]), da = T(da0, [G * r, K]), db = T(db0, [G * N, r]);
          addon.opLoraBackward(T(dy, [M, G * N]), xt, T(w, [G * N, K], wd), at, bt, xa, dx, da, db, 2.0, p, 1234, 5, G, true, be);
          return { dx, da, db };
        }, { dx: tol, da: F32, db: F32 });
      });
    }
  });

  describe('nn ops', () => {
    it('embedding fwd/bwd with positions', () => {
      const M = 13, C = 40, V = 9, P = 20;
      const ids = new Int32Array(M).map((_, i) => (i * 5) % V), pos = new Int32Array(M).map((_, i) => i % 7);
      const tab = randn(V * C, 30), ptab = randn(P * C, 31), dout = randn(M * C, 32), dt0 = randn(V * C, 33), dp0 = randn(P * C, 34);
      check(`embedding ${M}x${C} V=${V} +pos(offset 2)`, (be, T) => {
        const out = T(new Float32Array(M * C), [M, C]);
        addon.opEmbedding(T(ids, [M]), T(tab, [V, C]), out, T(pos, [M]), T(ptab, [P, C]), 2, be);
        return { out };
      }, 0);
      check(`embedding ${M}x${C} V=${V} bf16 table +pos`, (be, T) => {
        const out = T(new Float32Array(M * C), [M, C]);
        addon.opEmbedding(T(ids, [M]), T(tab, [V, C], 'bf16'), out, T(pos, [M]), T(ptab, [P, C]), 2, be);
        return { out };
      }, 0);
      check(`embedding_bwd ${M}x${C} (repeated ids)`, (be, T) => {
        const dt = T(dt0, [V, C]), dp = T(dp0, [P, C]);
        addon.opEmbeddingBackward(T(ids, [M]), T(dout, [M, C]), dt, T(pos, [M]), dp, 2, be);
        return { dtable: dt, dpos: dp };
      }, F32);
    });
    for (const affine of [true, false]) {
      it(`layernorm fwd/bwd affine=${affine}`, () => {
        const M = 11, C = 300;
        const x = randn(M * C, 40, 3), g = randn(C, 41), bb = randn(C, 42), dy = randn(M * C, 43), dg0 = randn(C, 44), db0 = randn(C, 45);
        for (let i = 0; i < x.length; ++i) x[i] += 1.5;
        check(`layernorm ${M}x${C} affine=${affine}`, (be, T) => {
          const y = T(new Float32Array(M * C), [M, C]), mean = T(new Float32Array(M), [M]), rstd = T(new Float32Array(M), [M]);
          addon.opLayerNorm(T(x, [M, C]), affine ? T(g, [C]) : null, affine ? T(bb, [C]) : null, y, mean, rstd, 1e-5, be);
          return { y, mean, rstd };
        }, F32);
        check(`layernorm_bwd ${M}x${C} affine=${affine}`, (be, T) => {
          const xt = T(x, [M, C]), mean = T(new Float32Array(M), [M]), rstd = T(new Float32Array(M), [M]);
          const y = T(new Float32Array(M * C), [M, C]);
          addon.opLayerNorm(xt, affine ? T(g, [C]) : null, affine ? T(bb, [C]) : null, y, mean, rstd, 1e-5, 'ref');
          const dx = T(new Float32Array(M * C), [M, C]), dg = T(dg0, [C]), db = T(db0, [C]);
          addon.opLayerNormBackward(T(dy, [M, C]), xt, affine ? T(g, [C]) : null, mean, rstd, dx, affine ? dg : null, affine ? db : null, be);
          return affine ? { dx, dgamma: dg, dbeta: db } : { dx };
        }, F32);
        // From the output (x̂ = (y - beta) / gamma; gamma kept away from 0).
        const gs = g.map((v) => (v >= 0 ? v + 0.5 : v - 0.5));
        if (affine) check(`layernorm_bwd from output ${M}x${C}`, (be, T) => {
          const mean = T(new Float32Array(M), [M]), rstd = T(new Float32Array(M), [M]), y = T(new Float32Array(M * C), [M, C]);
          addon.opLayerNorm(T(x, [M, C]), T(gs, [C]), T(bb, [C]), y, mean, rstd, 1e-5, 'ref');
          const dx = T(new Float32Array(M * C), [M, C]), dg = T(dg0, [C]), db = T(db0, [C]);
          addon.opLayerNormBackwardFromOutput(T(dy, [M, C]), y, T(gs, [C]), T(bb, [C]), rstd, dx, dg, db, be);
          return { dx, dgamma: dg, dbeta: db };
        }, F32);
      });
    }
    it('causal attention fwd/bwd (strided q/k/v, f32 and bf16, kv_len, mask)', () => {
      const B = 2, T_ = 37, H = 2, D = 24, C = H * D;
      const qkv = randn(B * T_ * 3 * C, 50), dout = randn(B * T_ * C, 51);
      const kvl = new Int32Array([T_, 29]);
      const mask = new Int32Array(B * T_).fill(1);
      mask[3] = 0; mask[T_ + 10] = 0;
      for (const withPad of [false, true]) for (const dt of ['f32', 'bf16']) {
        const views = (T: any) => {
          const buf = T(qkv, [B, T_, 3 * C], dt);
          return [buf.narrow(2, 0, C), buf.narrow(2, C, C), buf.narrow(2, 2 * C, C)];
        };
        const tag = `B=${B} T=${T_} H=${H} D=${D} ${dt} q/k/v${withPad ? ' kv_len+mask' : ''}`;
        check(`attention ${tag}`, (be, T) => {
          const [q, k, v] = views(T);
          const o = T(new Float32Array(B * T_ * C), [B, T_, C]), lse = T(new Float32Array(B * H * T_), [B, H, T_]);
          addon.opAttention(q, k, v, o, lse, H, null, withPad ? T(kvl, [B]) : null, withPad ? T(mask, [B, T_]) : null, be);
          const lseA = Array.from(lse.toArray() as Float32Array).map((x) => (Number.isFinite(x) ? x : -1e4));
          return { o, lse: lseA };
        }, 1e-9);
        check(`attention_bwd ${tag}`, (be, T) => {
          const [q, k, v] = views(T);
          const pad = [withPad ? T(kvl, [B]) : null, withPad ? T(mask, [B, T_]) : null];
          const o = T(new Float32Array(B * T_ * C), [B, T_, C]), lse = T(new Float32Array(B * H * T_), [B, H, T_]);
          addon.opAttention(q, k, v, o, lse, H, null, pad[0], pad[1], 'ref');
          const dq = T(new Float32Array(B * T_ * C), [B, T_, C]), dk = T(new Float32Array(B * T_ * C), [B, T_, C]), dv = T(new Float32Array(B * T_ * C), [B, T_, C]);
          addon.opAttentionBackward(T(dout, [B, T_, C]), q, k, v, o, lse, dq, dk, dv, H, null, pad[0], pad[1], be);
          return { dq, dk, dv };
        }, 1e-9);
      }
    });
    it('attention with grouped KV heads, a query offset and a KV cache (decode)', () => {
      // 4 query heads over 2 KV heads; 3 query rows at positions 6..8 over 9 key rows (a mask hides
      // key 2 of batch 1); then the decode form: the 3 new k/v rows appended to a [B, 12, Ckv] cache
      // at offset 6 (cache checked too, so the append kernel is compared).
      const B = 2, T_ = 3, Tk = 9, H = 4, Hkv = 2, D = 8, C = H * D, Ckv = Hkv * D, S = 12, off = 6;
      const mask = new Int32Array(B * Tk).fill(1);
      mask[Tk + 2] = 0;
      const cmask = new Int32Array(B * S).fill(1);
      cmask[S + 2] = 0;
      for (const dt of ['f32', 'bf16']) {
        check(`attention GQA ${H}/${Hkv} qOffset=${off} ${dt} fwd+bwd`, (be, T) => {
          const q = T(randn(B * T_ * C, 52), [B, T_, C], dt), k = T(randn(B * Tk * Ckv, 53), [B, Tk, Ckv], dt), v = T(randn(B * Tk * Ckv, 54), [B, Tk, Ckv], dt);
          const o = T(new Float32Array(B * T_ * C), [B, T_, C]), lse = T(new Float32Array(B * H * T_), [B, H, T_]);
          addon.opAttention(q, k, v, o, lse, H, null, null, T(mask, [B, Tk]), be, off);
          const dq = T(new Float32Array(B * T_ * C), [B, T_, C]), dk = T(new Float32Array(B * Tk * Ckv), [B, Tk, Ckv]), dv = T(new Float32Array(B * Tk * Ckv), [B, Tk, Ckv]);
          addon.opAttentionBackward(T(randn(B * T_ * C, 55), [B, T_, C]), q, k, v, null, lse, dq, dk, dv, H, null, null, T(mask, [B, Tk]), be, off);
          return { o, lse, dq, dk, dv };
        }, 1e-9);
        check(`attention GQA ${H}/${Hkv} KV cache offset=${off} ${dt}`, (be, T) => {
          const q = T(randn(B * T_ * C, 56), [B, T_, C], dt), k = T(randn(B * T_ * Ckv, 57), [B, T_, Ckv], dt), v = T(randn(B * T_ * Ckv, 58), [B, T_, Ckv], dt);
          const kc = T(randn(B * S * Ckv, 59), [B, S, Ckv], dt), vc = T(randn(B * S * Ckv, 60), [B, S, Ckv], dt);
          const o = T(new Float32Array(B * T_ * C), [B, T_, C]), lse = T(new Float32Array(B * H * T_), [B, H, T_]);
          addon.opAttention(q, k, v, o, lse, H, null, null, T(cmask, [B, S]), be, off, kc, vc);
          const widen = (t: any) => {
            if (dt === 'f32') return t;
            const w = T(new Float32Array(B * S * Ckv), [B, S, Ckv]);
            addon.opCast(t, w, be);
            return w;
          };
          return { o, lse, kCache: widen(kc), vCache: widen(vc) };
        }, { o: 1e-9, lse: 1e-9, kCache: 0, vCache: 0 });
      }
    });
    it('rmsnorm (and QK-norm per head), rope, swiglu fwd/bwd', () => {
      const M = 5, N = 48, D = 16, H = N / D;
      const x = randn(M * N, 61), w = randn(N, 62), wd = randn(D, 63), dy = randn(M * N, 64);
      for (const [width, wt] of [[N, w], [D, wd]] as [number, Float32Array][]) {
        check(`rmsnorm width=${width} fwd+bwd`, (be, T) => {
          const xt = T(x, [M, N]), wT = T(wt, [width]);
          const y = T(new Float32Array(M * N), [M, N]), rstd = T(new Float32Array(M * (N / width)), [M * (N / width)]);
          addon.opRmsNorm(xt, wT, y, rstd, 1e-6, null, be);
          const dx = T(new Float32Array(M * N), [M, N]), dw = T(new Float32Array(width), [width]);
          addon.opRmsNormBackward(T(dy, [M, N]), xt, wT, rstd, dx, dw, null, be);
          return { y, rstd, dx, dw };
        }, 1e-11);
      }
      const inv = Float32Array.from({ length: D / 2 }, (_, i) => Math.fround(1 / Math.pow(10000, (2 * i) / D)));
      const pos = Int32Array.from({ length: M }, (_, m) => 3 * m + 1);
      for (const inverse of [false, true]) {
        check(`rope heads=${H} D=${D}${inverse ? ' inverse' : ''}`, (be, T) => {
          const y = T(new Float32Array(M * N), [M, N]);
          addon.opRope(T(x, [M, N]), y, T(pos, [M]), T(inv, [D / 2]), H, inverse, be);
          return { y };
        }, 1e-12);
      }
      for (const dt of ['f32', 'bf16'] as const) check(`swiglu ${dt} fwd+bwd (gate/up halves)`, (be, T) => {
        const gu = T(randn(M * N, 65, 4), [M, N], dt);
        const g = gu.narrow(1, 0, N / 2), u = gu.narrow(1, N / 2, N / 2);
        const y = T(new Float32Array((M * N) / 2), [M, N / 2]);
        addon.opSwiGlu(g, u, y, be);
        const dg = T(new Float32Array((M * N) / 2), [M, N / 2]), du = T(new Float32Array((M * N) / 2), [M, N / 2]);
        addon.opSwiGluBackward(g, u, T(randn((M * N) / 2, 66), [M, N / 2]), dg, du, be);
        return { y, dgate: dg, dup: du };
      }, 1e-11);
    });
    it('elementwise: relu, relu_bwd, add, scale, dropout', () => {
      const n = 1000;
      const x = randn(n, 60), y = randn(n, 61);
      check(`relu n=${n}`, (be, T) => { const o = T(new Float32Array(n), [n]); addon.opRelu(T(x, [n]), o, be); return { o }; }, 0);
      check(`relu_bwd n=${n}`, (be, T) => { const o = T(new Float32Array(n), [n]); addon.opReluBackward(T(x, [n]), T(y, [n]), o, be); return { o }; }, 0);
      // The keep mask (n = 1000: 15 whole words and a ragged one), compared unpacked, and the
      // backward that reads it.
      check(`relu_mask n=${n}`, (be, T) => {
        const o = T(new Float32Array(n), [n]), dx = T(new Float32Array(n), [n]);
        const bits = Tensor.empty('i64', [Math.ceil(n / 64)], be === 'ref' ? 'cpu' : target);
        try {
          addon.opReluMask(T(x, [n]), o, bits, be);
          addon.opReluMaskBackward(bits, T(y, [n]), dx, be);
          const words = bits.toArray() as BigInt64Array;
          const keep = Float32Array.from({ length: n }, (_, i) => Number((BigInt.asUintN(64, words[i >> 6]) >> BigInt(i & 63)) & 1n));
          return { o, dx: Float32Array.from(dx.toArray() as Float32Array), keep };
        } finally {
          bits.dispose();
        }
      }, 0);
      check(`add n=${n} alpha=-0.5`, (be, T) => { const o = T(new Float32Array(n), [n]); addon.opAdd(T(x, [n]), T(y, [n]), o, -0.5, be); return { o }; }, 0);
      check(`scale n=${n}`, (be, T) => { const o = T(new Float32Array(n), [n]); addon.opScale(T(x, [n]), o, 3.25, be); return { o }; }, 0);
      for (const p of [0.1, 0.5, 1]) {
        check(`dropout n=${n} p=${p} (same Philox mask)`, (be, T) => { const o = T(new Float32Array(n), [n]); addon.opDropout(T(x, [n]), o, p, 987654321, 7, be); return { o }; }, 0);
      }
    });
    it('cast between f32, f16 and bf16 (RNE)', () => {
      const n = 513;
      const x = randn(n, 70, 100);
      x[0] = 65519; x[1] = 65520; x[2] = 2 ** -25; x[3] = 3 * 2 ** -25; x[4] = 1 + 2 ** -8; x[5] = 3e-6; x[6] = -1e-7;
      for (const [s, d] of [['f32', 'bf16'], ['f32', 'f16'], ['bf16', 'f32'], ['f16', 'bf16'], ['bf16', 'f16']]) {
        check(`cast ${s} -> ${d} n=${n}`, (be, T) => {
          const src = T(x, [n], s), dst = T(new Float32Array(n), [n], d);
          addon.opCast(src, dst, be);
          return { bits: Array.from(dst.bytes() as Uint8Array) };
        }, 0);
      }
    });
  });

  describe('training ops', () => {
    for (const wd of ['f32', 'nf4']) {
      it(`linear + cross-entropy over vocab chunks w=${wd}`, () => {
        const M = 19, C = 64, V = 150;
        const h = randn(M * C, 80), w = randn(V * C, 81, 0.5);
        const tg = new Int32Array(M).map((_, i) => (i * 37) % V);
        tg[4] = -100; tg[11] = -100;
        check(`cross_entropy M=${M} C=${C} V=${V} chunk=64 w=${wd}`, (be, T) => {
          const dh = T(new Float32Array(M * C), [M, C]), lg = T(new Float32Array(M * V), [M, V]), lr = T(new Float32Array(M), [M]);
          const wt = quantized(T, w, [V, C], wd, be);
          const r = addon.opCrossEntropy(T(h, [M, C]), wt, T(tg, [M]), dh, lg, lr, -100, 0.5, 64, be);
          return { dh, logits: lg, lossRows: lr, loss: [r.loss], count: [r.count] };
        }, wd === 'f32' ? { dh: F32, logits: F32, lossRows: F32, loss: F32, count: 0 } : { dh: TC, logits: TC, lossRows: TC, loss: TC, count: 0 });
      });
    }
    it('adamw and sum of squares', () => {
      const n = 777;
      const p0 = randn(n, 90), g = randn(n, 91), m0 = randn(n, 92, 0.1), v0 = randn(n, 93, 0.1).map(Math.abs);
      check(`adamw n=${n} step=3 wd=0.01`, (be, T) => {
        const p = T(p0, [n]), m = T(m0, [n]), v = T(v0, [n]);
        addon.opAdamW(p, T(g, [n]), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3, 0.5, be);
        return { p, m, v };
      }, F32);
      check(`sum_squares 2 tensors`, (be, T) => ({ s: [addon.opSumSquares([T(p0, [n]), T(g.slice(0, 37), [37])], be)] }), 1e-20);
    });
  });

  it.skipIf(process.env.LORA_EMU_CHILD === '1' || order !== 'forward' || target !== 'emu')('passes again with LORA_EMU_ORDER=shuffled (child process)', () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
    const r = spawnSync(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--project', 'core-native', 'test/emu-ops.test.ts'], {
      cwd: root,
      env: { ...process.env, LORA_EMU_ORDER: 'shuffled', LORA_EMU_SEED: '7', LORA_EMU_CHILD: '1' },
      encoding: 'utf8',
      timeout: 900_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    const ok = out.split('\n').filter((l) => l.includes('[emu shuffled] ok'));
    console.log(`[emu] shuffled child: exit ${r.status}, ${ok.length} ok lines, ${out.split('\n').filter((l) => l.includes('[emu shuffled] FAIL')).length} FAIL lines`);
    expect(r.status, out.slice(-4000)).toBe(0);
    expect(ok.length).toBe(lines.length);
  });
});

describe.skipIf(hasEmu || target !== 'emu')('emu backend', () => {
  it('is reported unusable with a reason when the emulator is not built', () => {
    console.log(`[emu] skipped: ${emuStatus?.reason}`);
    expect(emuStatus?.reason).toBeTruthy();
  });
});
