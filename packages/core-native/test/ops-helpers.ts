// Shared helpers of the op tests: seeded data, tensor construction, NMSE, backend discovery.
import { native, ops, type NativeTensor } from '../dist/index.js';

export const A = native();
export const T = A.Tensor;
export { ops };

// A deliberate copy of the SDK's seededRandom (data/split.ts): the addon's tests cannot import the SDK above it.
/** Uniform floats in [0, 1) from a 32-bit seed (mulberry32): the same stream on every machine. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic uniform [lo, hi) floats (mulberry32). */
export function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const u = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; ++i) out[i] = lo + (hi - lo) * u();
  return out;
}

export function f32(data: Float32Array, shape: number[], dtype: 'f32' | 'bf16' | 'f16' = 'f32'): NativeTensor {
  return T.fromArray(data, shape, dtype);
}
export function i32(data: number[] | Int32Array, shape: number[]): NativeTensor {
  return T.fromArray(Int32Array.from(data), shape, 'i32');
}

/** A weight [N, K] of the given dtype made from seeded data (quantized through `ref`). */
export function weight(dtype: string, N: number, K: number, seed: number, amp = 1): NativeTensor {
  const base = f32(rand(N * K, seed, -amp, amp), [N, K]);
  if (dtype === 'f32') return base;
  if (dtype === 'f16' || dtype === 'bf16') {
    const t = ops.cast(base, dtype, { backend: 'ref' });
    base.dispose();
    return t;
  }
  const q = ops.quantize(base, dtype as 'i8' | 'int4' | 'nf4' | 'bf16p', { backend: 'ref' });
  base.dispose();
  return q;
}

/** The first n keep bits of an i64 bit-mask tensor (bit i%64 of word i/64) as 0/1 values. */
export function unpackBits(bits: NativeTensor, n: number): Float32Array {
  const words = bits.toArray() as BigInt64Array;
  return Float32Array.from({ length: n }, (_, i) => Number((BigInt.asUintN(64, words[i >> 6]) >> BigInt(i & 63)) & 1n));
}

export function arr(t: NativeTensor): Float32Array {
  return t.toArray() as Float32Array;
}

/** Σ(a-b)² / Σ b² (0/0 = 0); NaN when the NaN patterns differ. */
export function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0,
    den = 0;
  for (let i = 0; i < a.length; ++i) {
    const x = a[i],
      y = b[i];
    if (x === y) {
      if (Number.isFinite(y)) den += y * y;
      continue;
    }
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) !== Number.isNaN(y)) return NaN;
      continue;
    }
    num += (x - y) * (x - y);
    den += y * y;
  }
  return den === 0 ? (num === 0 ? 0 : Infinity) : num / den;
}

/** Backends other than ref that this binary holds (usable or not: the unusable ones must say so). */
export const otherBackends = ['cpu', 'emu', 'cuda'] as const;

export function isUnsupported(e: unknown): boolean {
  return (e as { code?: string }).code === 'ERR_LORA_UNSUPPORTED';
}

export function concat(parts: ArrayLike<number>[]): Float64Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Float64Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p as ArrayLike<number>, o);
    o += p.length;
  }
  return out;
}

/** The stable `code` of the error fn throws (printed with its message), or NO_CODE / NO_ERROR. */
export function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    const err = e as { code?: string; message: string };
    console.log(`  ${err.code}: ${err.message}`);
    return err.code ?? 'NO_CODE';
  }
  return 'NO_ERROR';
}
