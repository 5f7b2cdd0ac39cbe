// The ragged attention op (attention_ragged: serving's one call per layer over a continuous batch).
// The property serving relies on: every request's output rows, lse and caches are bit for bit the
// per-request `attention` call with its cache (what the serve step ran before, B = 1 per request),
// on each backend; and its bad-input errors.
import { describe, expect, it } from 'vitest';

import { A, arr, code, f32, isUnsupported, ops, rand, type NativeTensor } from './ops-helpers.js';

type Backend = 'ref' | 'cpu' | 'emu';
const backends: Backend[] = ['ref', 'cpu', 'emu'];

interface Req {
  len: number;
  past: number;
  cap: number;
}
interface Case {
  name: string;
  H: number;
  Hkv: number;
  D: number;
  dtype: 'f32' | 'bf16';
  /** One unused row before every request (rows in no request keep o untouched). */
  gaps: boolean;
  reqs: Req[];
}

const cases: Case[] = [
  // Decode rows (one token each) at different pasts over caches of different capacities,
  // including a cache filled to its last position and a request with nothing cached yet.
  { name: 'decode rows', H: 4, Hkv: 4, D: 16, dtype: 'f32', gaps: false, reqs: [{ len: 1, past: 0, cap: 4 }, { len: 1, past: 3, cap: 8 }, { len: 1, past: 7, cap: 16 }, { len: 1, past: 15, cap: 16 }, { len: 1, past: 40, cap: 64 }, { len: 1, past: 100, cap: 128 }] },
  // Prefill chunks: one past the cpu kernel's 64-query block, one exactly a block, one after a cached prefix.
  { name: 'prefill chunks', H: 4, Hkv: 4, D: 32, dtype: 'f32', gaps: true, reqs: [{ len: 5, past: 0, cap: 8 }, { len: 70, past: 10, cap: 96 }, { len: 64, past: 0, cap: 64 }] },
  // Decode and prefill mixed, grouped KV heads (4 query heads per KV head), a head dim that is not
  // a multiple of 16 (the cpu kernel packs V), a one-position cache.
  { name: 'mixed, GQA', H: 8, Hkv: 2, D: 24, dtype: 'f32', gaps: true, reqs: [{ len: 1, past: 20, cap: 32 }, { len: 9, past: 0, cap: 12 }, { len: 1, past: 0, cap: 1 }, { len: 33, past: 31, cap: 80 }, { len: 1, past: 63, cap: 65 }] },
  // bf16 q/k/v and caches (the cpu kernel's widened and pair paths).
  { name: 'mixed, bf16', H: 6, Hkv: 3, D: 32, dtype: 'bf16', gaps: false, reqs: [{ len: 1, past: 5, cap: 8 }, { len: 12, past: 3, cap: 16 }, { len: 1, past: 70, cap: 72 }] },
];

const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const raw = (t: NativeTensor) => t.toArray() as unknown as ArrayBufferView;

function layout(c: Case) {
  const C = c.H * c.D, Ckv = c.Hkv * c.D, W = C + 2 * Ckv;
  let M = 0;
  const starts = c.reqs.map((r) => {
    M += c.gaps ? 1 : 0;
    const s = M;
    M += r.len;
    return s;
  });
  return { C, Ckv, W, M, starts };
}

/** Fresh caches with their earlier positions filled (seeded: the same for both paths). */
function caches(c: Case, Ckv: number) {
  return c.reqs.map((r, i) => ({
    k: f32(rand(r.cap * Ckv, 100 + i), [1, r.cap, Ckv], c.dtype),
    v: f32(rand(r.cap * Ckv, 200 + i), [1, r.cap, Ckv], c.dtype),
  }));
}

/** The differences between the ragged call and the per-request calls on backend b ([] = identical). */
function compare(c: Case, b: Backend): string[] {
  const { C, Ckv, W, M, starts } = layout(c);
  // q | k | v of every row side by side, as the OPT block's fused qkv buffer.
  const fused = f32(rand(M * W, 7), [M, W], c.dtype);
  const [q, k, v] = [0, C, C + Ckv].map((at, g) => fused.narrow(1, at, g ? Ckv : C));
  const ragCaches = caches(c, Ckv);
  const out = f32(new Float32Array(M * C), [M, C]);
  const rows = c.reqs.map((r, i) => ({ start: starts[i], len: r.len, cache: { ...ragCaches[i], offset: r.past } }));
  const { lse } = ops.attentionRagged(q, k, v, rows, { heads: c.H, out, backend: b });
  const o = arr(out), l = arr(lse);
  const diffs: string[] = [];
  const rowCaches = caches(c, Ckv);
  c.reqs.forEach((r, i) => {
    // The serve step's earlier call: the request's rows of the same buffer, B = 1.
    const rowsT = fused.narrow(0, starts[i], r.len).reshape([1, r.len, W]);
    const [q3, k3, v3] = [0, C, C + Ckv].map((at, g) => rowsT.narrow(2, at, g ? Ckv : C));
    const want = ops.attention(q3, k3, v3, { heads: c.H, cache: { ...rowCaches[i], offset: r.past }, backend: b });
    const tag = `request ${i} (len ${r.len}, past ${r.past}, cap ${r.cap})`;
    if (!bytes(o.subarray(starts[i] * C, (starts[i] + r.len) * C)).equals(bytes(arr(want.o)))) diffs.push(`${tag}: o`);
    if (!bytes(l.subarray(starts[i] * c.H, (starts[i] + r.len) * c.H)).equals(bytes(arr(want.lse)))) diffs.push(`${tag}: lse`);
    for (const kv of ['k', 'v'] as const) if (!bytes(raw(ragCaches[i][kv])).equals(bytes(raw(rowCaches[i][kv])))) diffs.push(`${tag}: ${kv} cache`);
  });
  // Rows in no request are left alone.
  if (c.gaps) starts.forEach((s) => o.subarray((s - 1) * C, s * C).some((x) => x !== 0) && diffs.push(`gap row ${s - 1} written`));
  return diffs;
}

describe('attention_ragged', () => {
  it('every request equals its own attention call with its cache, bit for bit, on each backend', () => {
    const failures: string[] = [];
    let compared = 0;
    for (const c of cases) {
      for (const b of backends) {
        let diffs: string[];
        try {
          diffs = compare(c, b);
        } catch (e) {
          if (isUnsupported(e)) {
            console.log(`${b} attention_ragged ${c.name}: not run (${(e as Error).message.split(': ').pop()})`);
            continue;
          }
          throw e;
        }
        compared++;
        console.log(`${b} attention_ragged ${c.name}: ${c.reqs.length} requests, ${diffs.length} differences`);
        failures.push(...diffs.map((d) => `${b} ${c.name} ${d}`));
      }
    }
    expect(failures).toEqual([]);
    expect(compared).toBeGreaterThanOrEqual(cases.length);
  });
});

describe('attention_ragged rejects bad input with coded errors', () => {
  const [M, H, D] = [6, 2, 8];
  const C = H * D;
  const q = f32(rand(M * C, 1), [M, C]);
  const k = f32(rand(M * C, 2), [M, C]);
  const v = f32(rand(M * C, 3), [M, C]);
  const cache = (cap: number, dtype: 'f32' | 'bf16' = 'f32', width = C) => ({ k: f32(rand(cap * width, 4), [1, cap, width], dtype), v: f32(rand(cap * width, 5), [1, cap, width], dtype) });
  const req = (start: number, len: number, past = 0, cap = 8) => ({ start, len, cache: { ...cache(cap), offset: past } });
  const run = (rows: Parameters<typeof ops.attentionRagged>[3], heads = H) => () => ops.attentionRagged(q, k, v, rows, { heads, backend: 'ref' });

  it('requests out of range, empty, overlapping, unsorted or past their cache', () => {
    expect(code(run([req(4, 3)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([req(-1, 2)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([req(2, 0)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([req(0, 3), req(2, 2)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([req(3, 2), req(0, 2)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([req(0, 2, 7, 8)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([req(0, 2, -1)]))).toBe('ERR_LORA_SHAPE');
    expect(code(run([req(1.5, 2)]))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(run([req(0, 2), req(2, 4, 4)]))).toBe('NO_ERROR');
  });

  it('caches of the wrong dtype, width or rank, shared between requests, or over an input', () => {
    expect(code(run([{ start: 0, len: 1, cache: { ...cache(4, 'bf16'), offset: 0 } }]))).toBe('ERR_LORA_DTYPE');
    expect(code(run([{ start: 0, len: 1, cache: { ...cache(4, 'f32', C / 2 + 1), offset: 0 } }]))).toBe('ERR_LORA_SHAPE');
    const flat = f32(rand(4 * C, 6), [4, C]);
    expect(code(run([{ start: 0, len: 1, cache: { k: flat, v: cache(4).v, offset: 0 } }]))).toBe('ERR_LORA_SHAPE');
    const shared = cache(8);
    expect(code(run([{ start: 0, len: 1, cache: { ...shared, offset: 0 } }, { start: 1, len: 1, cache: { ...shared, offset: 1 } }]))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(run([{ start: 0, len: 1, cache: { k: q.reshape([1, M, C]), v: cache(6).v, offset: 0 } }]))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(run([req(0, 1)], 3))).toBe('ERR_LORA_SHAPE');
  });

  it('a ragged argument list, a cache that is not a tensor', () => {
    // The wrapper always passes one entry per request; the binding checks the raw lists anyway.
    const op = (A as unknown as Record<string, (...args: unknown[]) => unknown>).opAttentionRagged;
    const c = cache(4);
    const o = f32(new Float32Array(M * C), [M, C]);
    const lse = f32(new Float32Array(H * M), [H * M]);
    expect(code(() => op(q, k, v, o, lse, H, null, [0, 1], [1], [0], [c.k], [c.v], 'ref'))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => op(q, k, v, o, lse, H, null, [0], [1], [0], [{}], [c.v], 'ref'))).toBe('ERR_LORA_INVALID_ARG');
    expect(code(() => op(q, k, v, o, lse, H, null, [0], [1], [0], [c.k], [c.v], 'ref'))).toBe('NO_ERROR');
    expect(code(() => op(q, k, v, o, f32(new Float32Array(H * M - 1), [H * M - 1]), H, null, [0], [1], [0], [c.k], [c.v], 'ref'))).toBe('ERR_LORA_SHAPE');
  });
});
