// The GGUF v3 container as llama.cpp's gguf.cpp reads it (docs/gguf.md in ggml): a little-endian
// header (magic "GGUF", version, tensor count, KV count), typed key/value metadata, tensor infos
// (name, dims fastest-first, ggml type, offset into the data section), padding to
// `general.alignment`, then the tensor data, each tensor starting at a multiple of the alignment.

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types, numbered as in gguf.h's `enum gguf_type`. */
export const GgufValueType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;
export type GgufValueTypeId = (typeof GgufValueType)[keyof typeof GgufValueType];

/** A scalar metadata type by name; arrays hold one of these. */
export type GgufScalarType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'bool' | 'string' | 'u64' | 'i64' | 'f64';

export const SCALAR_TYPE_ID: Record<GgufScalarType, GgufValueTypeId> = {
  u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, u64: 10, i64: 11, f64: 12,
};

/** Fixed byte sizes of the numeric types (strings are length-prefixed, arrays nested). */
export const SCALAR_SIZE: Partial<Record<GgufScalarType, number>> = {
  u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8,
};

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue =
  | { type: GgufScalarType; value: GgufScalar }
  | { type: 'array'; itemType: GgufScalarType; values: readonly GgufScalar[] };

/** The tensor types this exporter writes, numbered as in ggml.h's `enum ggml_type`. */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;
export type GgmlTypeName = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0';
export const GGML_TYPE_ID: Record<GgmlTypeName, number> = { f32: 0, f16: 1, bf16: 30, q8_0: 8, q4_0: 2 };
export const GGML_TYPE_NAMES = Object.keys(GGML_TYPE_ID) as GgmlTypeName[];

/** Elements per block and bytes per block (ggml-common.h: block_q8_0 = f16 d + 32 int8; block_q4_0 = f16 d + 16 bytes). */
export const GGML_BLOCK: Record<GgmlTypeName, { elements: number; bytes: number }> = {
  f32: { elements: 1, bytes: 4 },
  f16: { elements: 1, bytes: 2 },
  bf16: { elements: 1, bytes: 2 },
  q8_0: { elements: 32, bytes: 34 },
  q4_0: { elements: 32, bytes: 18 },
};

export function isGgmlTypeName(s: unknown): s is GgmlTypeName {
  return typeof s === 'string' && Object.hasOwn(GGML_TYPE_ID, s);
}

/** Bytes a row-major tensor of `shape` takes in `type`; the innermost dim must fill whole blocks. */
export function ggmlTensorBytes(type: GgmlTypeName, shape: readonly number[]): number {
  const { elements, bytes } = GGML_BLOCK[type];
  const inner = shape[shape.length - 1] ?? 1;
  if (inner % elements !== 0) throw new RangeError(`${type} needs the innermost dim to be a multiple of ${elements}, got ${inner}`);
  let n = 1;
  for (const d of shape) n *= d;
  return (n / elements) * bytes;
}

export const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;
