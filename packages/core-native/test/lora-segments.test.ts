// The segmented LoRA forward (lora_segments: serving's S-LoRA / Punica op): its op-matrix table
// (every backend against ref, by NMSE), the property serving relies on - every row equals
// loraForward on that row with its segment's adapter (matmulXWt without one), bit for bit, on each
// backend and every weight format - and its bad-input errors.
import { describe, expect, it } from 'vitest';

import { A, arr, code, f32, isUnsupported, nmse, ops, rand, type NativeTensor, weight } from './ops-helpers.js';

type Backend = 'ref' | 'cpu' | 'emu' | 'cuda';
const backends: Backend[] = ['ref', 'cpu', 'emu', 'cuda'];

interface Seg {
  start: number;
  len: number;
  r: number;
}
interface Shape {
  M: number;
  K: number;
  N: number;
  G: number;
  segs: Seg[];
}

const shapes: Shape[] = [
  // Rows in no segment at both ends and between segments; ranks differ per segment.
  { M: 13, K: 128, N: 33, G: 1, segs: [{ start: 1, len: 4, r: 8 }, { start: 7, len: 1, r: 2 }, { start: 9, len: 3, r: 16 }] },
  // q/k/v stacking with a group width of 64 (the cpu backend's grouped form) and an odd rank in
  // the mix, which moves every segment to the per-group form: the rows must not notice.
  { M: 11, K: 64, N: 64, G: 3, segs: [{ start: 0, len: 5, r: 8 }, { start: 5, len: 2, r: 5 }, { start: 8, len: 3, r: 4 }] },
  { M: 9, K: 192, N: 48, G: 2, segs: [{ start: 2, len: 7, r: 6 }] },
  // Past one f32 k-block of the cpu GEMM (KC 1024 on the f32 path): the low-rank term rides on
  // the last block, after the earlier blocks' partial sums were stored.
  { M: 8, K: 1152, N: 40, G: 1, segs: [{ start: 0, len: 3, r: 8 }, { start: 5, len: 3, r: 4 }] },
  // A reduction of 104 bf16 pairs: XA's last 8 pairs of A take the scalar rounding rule of the
  // GEMM's packing (int4/nf4 skip it: their blocks of 64 need K % 64 == 0); a rank of 32 packs B
  // as one whole block of 16 pairs.
  { M: 6, K: 208, N: 24, G: 1, segs: [{ start: 0, len: 2, r: 3 }, { start: 3, len: 3, r: 32 }] },
];
const skip = (s: Shape, wd: string) => (wd === 'bf16p' && !bf16pOk(s)) || ((wd === 'int4' || wd === 'nf4') && s.K % 64 !== 0);
const W_DTYPES = ['f32', 'f16', 'bf16', 'i8', 'int4', 'nf4', 'bf16p'] as const;
// bf16p splits into groups at whole 64-row panels only and needs rows % 16 == 0.
const bf16pOk = (s: Shape) => (s.G * s.N) % 16 === 0 && (s.G === 1 || s.N % 64 === 0);

function inputs(s: Shape, xd: 'f32' | 'bf16', wd: string) {
  const x = rand(s.M * s.K, 31);
  return {
    xData: x,
    x: f32(x, [s.M, s.K], xd),
    w: weight(wd, s.G * s.N, s.K, 32),
    bias: f32(rand(s.G * s.N, 33), [s.G * s.N]),
    adapters: s.segs.map((g, i) => ({
      a: f32(rand(s.G * g.r * s.K, 40 + i, -0.5, 0.5), [s.G * g.r, s.K]),
      b: f32(rand(s.G * s.N * g.r, 50 + i, -0.5, 0.5), [s.G * s.N, g.r]),
      scale: 0.5 + i,
    })),
  };
}

function segmented(s: Shape, i: ReturnType<typeof inputs>, b: Backend): Float32Array {
  const segments = s.segs.map((g, j) => ({ start: g.start, len: g.len, ...i.adapters[j] }));
  return arr(ops.loraSegments(i.x, i.w, segments, { bias: i.bias, groups: s.G, outDtype: 'f32', backend: b }));
}

// Rows [start, start + len) of the input as a tensor of their own (the same rounding for bf16).
function rowsOf(i: ReturnType<typeof inputs>, s: Shape, xd: 'f32' | 'bf16', start: number, len: number): NativeTensor {
  return f32(i.xData.slice(start * s.K, (start + len) * s.K), [len, s.K], xd);
}

// What serving used to run per segment: loraForward on the segment's rows (matmulXWt on rows in
// no segment), each alone, assembled into [M, G*N].
function perSegment(s: Shape, i: ReturnType<typeof inputs>, xd: 'f32' | 'bf16', b: Backend, single = false): Float32Array {
  const GN = s.G * s.N;
  const out = new Float32Array(s.M * GN);
  const covered = new Array<number>(s.M).fill(-1);
  s.segs.forEach((g, j) => {
    for (let m = g.start; m < g.start + g.len; m++) covered[m] = j;
  });
  // Runs of rows with the same segment (or none); single: every row alone (a decode step's M = 1).
  for (let m = 0; m < s.M; ) {
    let e = m + 1;
    while (!single && e < s.M && covered[e] === covered[m]) e++;
    const x = rowsOf(i, s, xd, m, e - m);
    const j = covered[m];
    const y =
      j < 0
        ? ops.matmulXWt(x, i.w, { bias: i.bias, outDtype: 'f32', backend: b })
        : ops.loraForward(x, i.w, i.adapters[j].a, i.adapters[j].b, { bias: i.bias, scale: i.adapters[j].scale, groups: s.G, outDtype: 'f32', backend: b }).y;
    out.set(arr(y), m * GN);
    m = e;
  }
  return out;
}

function firstDiff(a: Float32Array, b: Float32Array): string {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let k = 0; k < ua.length; k++) if (ua[k] !== ub[k]) return `element ${k}: ${a[k]} vs ${b[k]}`;
  return a.length === b.length ? 'none' : 'lengths differ';
}

const tag = (s: Shape, xd: string, wd: string) => `${xd} W=${wd} M=${s.M} K=${s.K} N=${s.N} G=${s.G} r=${s.segs.map((g) => g.r).join('/')}`;

describe('lora_segments', () => {
  it('op matrix: every backend against ref', () => {
    // bf16 operands (2^-9 relative) with f32 accumulation against ref's f64: NMSE around 1e-5;
    // f32 FMA against f64: ~K·2^-24 relative.
    const failures: string[] = [];
    let compared = 0;
    for (const xd of ['f32', 'bf16'] as const) {
      for (const wd of W_DTYPES) {
        for (const s of shapes) {
          if (skip(s, wd)) continue;
          const [tol, why] = xd === 'f32' && (wd === 'f32' || wd === 'f16') ? [1e-10, 'f32 FMA vs f64 reference'] : [1e-4, 'operands rounded to bf16, f32 accumulation'];
          const i = inputs(s, xd, wd);
          const want = segmented(s, i, 'ref');
          for (const b of backends.slice(1)) {
            let got: Float32Array;
            try {
              got = segmented(s, i, b);
            } catch (e) {
              const code = (e as { code?: string }).code;
              if (isUnsupported(e) || (b === 'cuda' && code === 'ERR_LORA_DEVICE')) {
                console.log(`${b} lora_segments ${tag(s, xd, wd)}: not run (${(e as Error).message.split(': ').pop()})`);
                continue;
              }
              throw e;
            }
            const err = nmse(got, want);
            compared++;
            console.log(`${b} lora_segments ${tag(s, xd, wd)}: nmse ${err.toExponential(1)} (tol ${tol.toExponential(0)}: ${why})`);
            if (!(err <= tol)) failures.push(`${b} ${tag(s, xd, wd)}: nmse ${err}`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
    expect(compared).toBeGreaterThan(0);
  });

  it('every row is bit-identical to loraForward on its own rows (matmulXWt without a segment), each backend', () => {
    const failures: string[] = [];
    let compared = 0;
    for (const b of ['ref', 'cpu', 'emu'] as const) {
      for (const xd of ['f32', 'bf16'] as const) {
        for (const wd of W_DTYPES) {
          for (const s of shapes) {
            if (skip(s, wd)) continue;
            // The emulator is slow: one weight format per activation dtype beside f32 and bf16.
            if (b === 'emu' && !(wd === 'f32' || wd === 'nf4')) continue;
            const i = inputs(s, xd, wd);
            let got: Float32Array;
            try {
              got = segmented(s, i, b);
            } catch (e) {
              if (isUnsupported(e)) continue;
              throw e;
            }
            for (const single of [false, true]) {
              if (single && b === 'emu') continue;
              const want = perSegment(s, i, xd, b, single);
              compared++;
              const same = Buffer.from(got.buffer).equals(Buffer.from(want.buffer));
              if (!same) failures.push(`${b} ${tag(s, xd, wd)}${single ? ' (rows one at a time)' : ''}: first difference at ${firstDiff(got, want)}`);
            }
          }
        }
      }
    }
    console.log(`${compared} comparisons, ${failures.length} not bit-identical`);
    expect(failures).toEqual([]);
    expect(compared).toBeGreaterThan(0);
  });

  // With a GPU the same property on the real tensor cores (device tensors; the op matrix above can
  // only hand the cuda backend host tensors): it rests on an mma's result for a row not depending on
  // where in its 64-row tile the row sits, which the emulator holds by construction.
  const cuda = A.backends().find((b) => b.name === 'cuda');
  it.skipIf(!cuda?.usable)('with a GPU: rows bit-identical to loraForward on cuda, and within bf16 of ref', () => {
    const dev = (t: NativeTensor) => t.to('cuda:0');
    for (const xd of ['f32', 'bf16'] as const) {
      for (const wd of ['f32', 'bf16', 'nf4'] as const) {
        for (const s of shapes) {
          if (skip(s, wd)) continue;
          const h = inputs(s, xd, wd);
          const i = { ...h, x: dev(h.x), w: dev(h.w), bias: dev(h.bias), adapters: h.adapters.map((a) => ({ a: dev(a.a), b: dev(a.b), scale: a.scale })) };
          const segments = s.segs.map((g, j) => ({ start: g.start, len: g.len, ...i.adapters[j] }));
          const got = arr(ops.loraSegments(i.x, i.w, segments, { bias: i.bias, groups: s.G, outDtype: 'f32', backend: 'cuda' }).to('cpu'));
          const GN = s.G * s.N;
          const want = new Float32Array(s.M * GN);
          want.set(arr(ops.matmulXWt(i.x, i.w, { bias: i.bias, outDtype: 'f32', backend: 'cuda' }).to('cpu')));
          s.segs.forEach((g, j) => {
            const x = dev(rowsOf(h, s, xd, g.start, g.len));
            const y = ops.loraForward(x, i.w, i.adapters[j].a, i.adapters[j].b, { bias: i.bias, scale: i.adapters[j].scale, groups: s.G, outDtype: 'f32', backend: 'cuda' }).y;
            want.set(arr(y.to('cpu')), g.start * GN);
          });
          expect(firstDiff(got, want), tag(s, xd, wd)).toBe('none');
          expect(nmse(got, segmented(s, h, 'ref'))).toBeLessThanOrEqual(1e-4);
        }
      }
    }
  });
  it.skipIf(!!cuda?.usable)('with a GPU only: the cuda rows check', () => {
    console.log(`lora_segments on cuda: skipped (${cuda?.reason ?? 'no cuda backend in this binary'})`);
  });

  it('no segments is the plain linear; a bf16 output is rounded once, as loraForward rounds it', () => {
    const s = shapes[0];
    for (const b of ['ref', 'cpu', 'emu'] as const) {
      const i = inputs(s, 'bf16', 'bf16');
      const y = arr(ops.loraSegments(i.x, i.w, [], { bias: i.bias, outDtype: 'f32', backend: b }));
      expect(Buffer.from(y.buffer).equals(Buffer.from(arr(ops.matmulXWt(i.x, i.w, { bias: i.bias, outDtype: 'f32', backend: b })).buffer))).toBe(true);
      const g = s.segs[0];
      const rows = rowsOf(i, s, 'bf16', g.start, g.len);
      const yb = ops.loraSegments(rows, i.w, [{ start: 0, len: g.len, ...i.adapters[0] }], { bias: i.bias, backend: b });
      expect(yb.dtype).toBe('bf16');
      const want = ops.loraForward(rows, i.w, i.adapters[0].a, i.adapters[0].b, { bias: i.bias, scale: i.adapters[0].scale, backend: b }).y;
      expect(Buffer.from(arr(ops.cast(yb, 'f32', { backend: 'ref' })).buffer).equals(Buffer.from(arr(ops.cast(want, 'f32', { backend: 'ref' })).buffer))).toBe(true);
    }
  });
});

describe('lora_segments rejects bad input with coded errors', () => {
  const [M, K, N] = [6, 16, 8];
  const x = f32(rand(M * K, 1), [M, K]);
  const w = f32(rand(N * K, 2), [N, K]);
  const ad = (r: number, G = 1) => ({ a: f32(rand(G * r * K, 3), [G * r, K]), b: f32(rand(G * N * r, 4), [G * N, r]), scale: 1 });
  const seg = (start: number, len: number, r = 2) => ({ start, len, ...ad(r) });
  const run = (segs: Parameters<typeof ops.loraSegments>[2], o: Parameters<typeof ops.loraSegments>[3] = {}) => () =>
    ops.loraSegments(x, w, segs, { backend: 'ref', ...o });

  it('segments out of range, empty, overlapping or unsorted', () => {
    expect(code(run([seg(4, 3)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([seg(-1, 2)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([seg(2, 0)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([seg(0, 3), seg(2, 2)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([seg(3, 2), seg(0, 2)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([seg(1.5, 2)]))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(run([{ ...seg(0, 2), scale: Number.NaN }]))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(run([seg(0, 2), seg(2, 4)]))).toBe('NO_ERROR');
  });

  it('rank, shape and dtype mismatches', () => {
    const a2 = ad(2), a3 = ad(3);
    expect(code(run([{ start: 0, len: 2, a: a2.a, b: a3.b, scale: 1 }]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([{ start: 0, len: 2, a: f32(rand(2 * 7, 5), [2, 7]), b: a2.b, scale: 1 }]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([{ start: 0, len: 2, ...ad(2) }], { groups: 2 }))).toBe('ERR_LORA_SHAPE');
    expect(code(run([{ start: 0, len: 2, a: ops.cast(a2.a, 'bf16', { backend: 'ref' }), b: a2.b, scale: 1 }]))).toBe('ERR_LORA_DTYPE');
    expect(code(() => ops.loraSegments(f32(rand(M * 7, 1), [M, 7]), w, [seg(0, 2)], { backend: 'ref' }))).toBe('ERR_LORA_SHAPE');
    expect(code(run([seg(0, 2)], { out: f32(new Float32Array(M * 4), [M, 4]) }))).toBe('ERR_LORA_SHAPE');
    expect(code(run([seg(0, 2)], { out: f32(new Float32Array(M * N), [M, N], 'f16') }))).toBe('ERR_LORA_DTYPE');
  });

  it('a ragged argument list and an output over an input', () => {
    // The wrapper always passes one entry per segment; the binding checks the raw lists anyway.
    const raw = (A as unknown as Record<string, (...args: unknown[]) => unknown>).opLoraSegments;
    const s = ad(2);
    const y = f32(new Float32Array(M * N), [M, N]);
    expect(code(() => raw(x, w, null, y, [s.a], [s.b], [0, 2], [2], [1], 1, 'ref'))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => raw(x, w, null, y, [s.a], [s.b], [0], [2], [1], 1, 'ref'))).toBe('NO_ERROR');
    const square = f32(rand(M * M, 9), [M, M]);
    expect(code(() => ops.loraSegments(square, f32(rand(M * M, 10), [M, M]), [], { out: square, backend: 'ref' }))).toBe('ERR_LORA_INVALID_ARG');
  });

  it('every backend answers for itself: emu/cuda refuse the cpu-packed bf16p weight by name', () => {
    const wp = weight('bf16p', 16, 16, 7);
    const xs = f32(rand(4 * 16, 8), [4, 16]);
    const a = f32(rand(2 * 16, 9), [2, 16]);
    const b = f32(rand(16 * 2, 10), [16, 2]);
    expect(code(() => ops.loraSegments(xs, wp, [{ start: 0, len: 4, a, b, scale: 1 }], { backend: 'emu' }))).toBe('ERR_LORA_UNSUPPORTED');
    expect(code(() => ops.loraSegments(xs, wp, [{ start: 0, len: 4, a, b, scale: 1 }], { backend: 'cpu' }))).toBe('NO_ERROR');
  });
});
