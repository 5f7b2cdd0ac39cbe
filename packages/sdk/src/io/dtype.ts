import { LoraError } from './errors.js';

/** Element types as safetensors names them. bf16/f16 have no JS typed array: they travel as raw bits. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export type TypedArrayOf<D extends DType> = D extends 'F64'
  ? Float64Array
  : D extends 'F32'
    ? Float32Array
    : D extends 'F16' | 'BF16' | 'U16'
      ? Uint16Array
      : D extends 'I64'
        ? BigInt64Array
        : D extends 'U64'
          ? BigUint64Array
          : D extends 'I32'
            ? Int32Array
            : D extends 'U32'
              ? Uint32Array
              : D extends 'I16'
                ? Int16Array
                : D extends 'I8'
                  ? Int8Array
                  : Uint8Array;

export type TensorData =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

const ITEM_SIZE: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

export const DTYPES = Object.keys(ITEM_SIZE) as DType[];

export function isDType(name: unknown): name is DType {
  return typeof name === 'string' && Object.hasOwn(ITEM_SIZE, name);
}

export function itemSize(dtype: DType): number {
  return ITEM_SIZE[dtype];
}

/** Number of elements; the empty shape is a scalar (1 element). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Views `bytes` (little-endian, as every format here stores them) as the typed array of `dtype`.
 * The bytes must start at an offset aligned to the item size; readers allocate fresh buffers so it is.
 */
export function viewAs(dtype: DType, buffer: ArrayBuffer, byteOffset = 0, length?: number): TensorData {
  const n = length ?? (buffer.byteLength - byteOffset) / ITEM_SIZE[dtype];
  switch (dtype) {
    case 'F64': return new Float64Array(buffer, byteOffset, n);
    case 'F32': return new Float32Array(buffer, byteOffset, n);
    case 'F16': case 'BF16': case 'U16': return new Uint16Array(buffer, byteOffset, n);
    case 'I64': return new BigInt64Array(buffer, byteOffset, n);
    case 'U64': return new BigUint64Array(buffer, byteOffset, n);
    case 'I32': return new Int32Array(buffer, byteOffset, n);
    case 'U32': return new Uint32Array(buffer, byteOffset, n);
    case 'I16': return new Int16Array(buffer, byteOffset, n);
    case 'I8': return new Int8Array(buffer, byteOffset, n);
    case 'U8': case 'BOOL': return new Uint8Array(buffer, byteOffset, n);
    default: throw new LoraError('E_DTYPE', `unknown dtype ${String(dtype)}`);
  }
}

/** bf16 is the top half of an f32, so widening is a shift. */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/** Round-to-nearest-even narrowing, NaN kept quiet (a truncated NaN could become an infinity). */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < u32.length; i++) {
    const x = u32[i];
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

const F16_TO_F32 = (() => {
  // A 64K-entry table: converting a checkpoint touches each value once, and this keeps it a lookup.
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return table;
})();

export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = F16_TO_F32[bits[i]];
  return out;
}

/** Round-to-nearest-even f32 → f16, with subnormals, overflow to infinity and NaN preserved. */
export function f32ToF16(values: Float32Array): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < u32.length; i++) {
    const x = u32[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) { out[i] = sign; continue; }
      const m = mant | 0x800000;
      const shift = 14 - e;
      let half = m >>> shift;
      const rem = m & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      if (rem > mid || (rem === mid && half & 1)) half++;
      out[i] = sign | half;
    } else {
      let half = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
      out[i] = sign | half; // a carry into the exponent is the correct rounding, up to infinity
    }
  }
  return out;
}

/** Any tensor payload as f32 values (i64 through Number: fine for ids and counts, not for hashes). */
export function toF32(dtype: DType, data: TensorData): Float32Array {
  if (dtype === 'BF16') return bf16ToF32(data as Uint16Array);
  if (dtype === 'F16') return f16ToF32(data as Uint16Array);
  if (dtype === 'F32') return data as Float32Array;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  return out;
}
