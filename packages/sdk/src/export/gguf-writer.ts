// Our GGUF v3 writer. The metadata and tensor-info section is built in memory (small); tensor data
// is pulled one tensor at a time from async producers and streamed to disk, each tensor padded with
// zeros to `general.alignment`, as gguf.cpp's gguf_write_to_file lays a file out.
import { LoraError } from '../io/errors.js';
import {
  GGML_TYPE_ID, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, SCALAR_TYPE_ID, alignUp, ggmlTensorBytes,
  type GgmlTypeName, type GgufScalar, type GgufScalarType, type GgufValue,
} from './gguf-format.js';
import { writeStreamAtomic } from './atomic-stream.js';

export interface GgufTensorSpec {
  name: string;
  /** Row-major shape as numpy/safetensors give it; written reversed (ggml's ne[0] is the innermost dim). */
  shape: number[];
  type: GgmlTypeName;
  /** Produces the encoded bytes (exactly ggmlTensorBytes(type, shape) of them) when the writer reaches this tensor. */
  data: () => Promise<Uint8Array> | Uint8Array;
}

export interface GgufImage {
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorSpec[];
}

const utf8 = new TextEncoder();

/** A little-endian byte sink that grows as needed. */
class Bytes {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) { this.room(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number) { this.room(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number) { this.room(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number) { this.room(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number) { this.room(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number) { this.room(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number) { this.room(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number) { this.room(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: number | bigint) { this.room(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: number | bigint) { this.room(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  raw(b: Uint8Array) { this.room(b.length); this.buf.set(b, this.length); this.length += b.length; }
  /** gguf_string: u64 byte length, then UTF-8 bytes with no terminator. */
  str(s: string) {
    // At most 3 bytes per UTF-16 unit; encode straight into the buffer after the length field.
    this.room(8 + s.length * 3);
    const { written } = utf8.encodeInto(s, this.buf.subarray(this.length + 8));
    this.view.setBigUint64(this.length, BigInt(written), true);
    this.length += 8 + written;
  }
  zeros(n: number) { this.room(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }
  bytes(): Uint8Array { return this.buf.slice(0, this.length); }
}

function checkScalar(key: string, type: GgufScalarType, v: GgufScalar): void {
  const fail = (why: string) => { throw new LoraError('E_CONFIG', `GGUF metadata "${key}": ${why}`); };
  if (type === 'string') { if (typeof v !== 'string') fail(`expected a string, got ${typeof v}`); return; }
  if (type === 'bool') { if (typeof v !== 'boolean') fail(`expected a boolean, got ${typeof v}`); return; }
  if (type === 'u64' || type === 'i64') { if (typeof v !== 'number' && typeof v !== 'bigint') fail(`expected an integer, got ${typeof v}`); return; }
  if (typeof v !== 'number') return fail(`expected a number, got ${typeof v}`);
  if (type !== 'f32' && type !== 'f64' && !Number.isInteger(v)) fail(`expected an integer for ${type}, got ${String(v)}`);
}

function putScalar(out: Bytes, type: GgufScalarType, v: GgufScalar): void {
  switch (type) {
    case 'u8': return out.u8(v as number);
    case 'i8': return out.i8(v as number);
    case 'u16': return out.u16(v as number);
    case 'i16': return out.i16(v as number);
    case 'u32': return out.u32(v as number);
    case 'i32': return out.i32(v as number);
    case 'f32': return out.f32(v as number);
    case 'f64': return out.f64(v as number);
    case 'bool': return out.u8(v ? 1 : 0);
    case 'u64': return out.u64(v as number | bigint);
    case 'i64': return out.i64(v as number | bigint);
    case 'string': return out.str(v as string);
  }
}

function putValue(out: Bytes, key: string, value: GgufValue): void {
  if (value.type === 'array') {
    out.u32(9);
    out.u32(SCALAR_TYPE_ID[value.itemType]);
    out.u64(value.values.length);
    for (const v of value.values) { checkScalar(key, value.itemType, v); putScalar(out, value.itemType, v); }
    return;
  }
  checkScalar(key, value.type, value.value);
  out.u32(SCALAR_TYPE_ID[value.type]);
  putScalar(out, value.type, value.value);
}

/** The alignment an image asks for (general.alignment, a u32 power of two), or the default 32. */
export function imageAlignment(metadata: Map<string, GgufValue>): number {
  const a = metadata.get('general.alignment');
  if (!a) return GGUF_DEFAULT_ALIGNMENT;
  if (a.type !== 'u32' || typeof a.value !== 'number' || a.value <= 0 || (a.value & (a.value - 1)) !== 0) {
    throw new LoraError('E_CONFIG', 'GGUF metadata "general.alignment" must be a u32 power of two');
  }
  return a.value;
}

/** Header + metadata + tensor infos + padding, and where each tensor's data starts in the data section. */
export function ggufHead(image: GgufImage): { head: Uint8Array; offsets: number[]; sizes: number[]; alignment: number } {
  const alignment = imageAlignment(image.metadata);
  const out = new Bytes();
  out.u32(GGUF_MAGIC);
  out.u32(GGUF_VERSION);
  out.u64(image.tensors.length);
  out.u64(image.metadata.size);
  for (const [key, value] of image.metadata) { out.str(key); putValue(out, key, value); }
  const offsets: number[] = [];
  const sizes: number[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const t of image.tensors) {
    if (seen.has(t.name)) throw new LoraError('E_DUPLICATE_KEY', `GGUF tensor "${t.name}" appears twice`);
    seen.add(t.name);
    if (utf8.encode(t.name).length >= 64) throw new LoraError('E_CONFIG', `GGUF tensor name "${t.name}" is longer than ggml's 63-byte limit`);
    let size: number;
    try { size = ggmlTensorBytes(t.type, t.shape); } catch (e) { throw new LoraError('E_SHAPE', `GGUF tensor "${t.name}" [${t.shape.join(', ')}]: ${(e as Error).message}`); }
    out.str(t.name);
    out.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) out.u64(t.shape[d]);
    out.u32(GGML_TYPE_ID[t.type]);
    out.u64(offset);
    offsets.push(offset);
    sizes.push(size);
    offset = alignUp(offset + size, alignment);
  }
  out.zeros(alignUp(out.length, alignment) - out.length);
  return { head: out.bytes(), offsets, sizes, alignment };
}

/** The whole file as chunks: the head, then each tensor's bytes followed by its zero padding. */
export async function* ggufChunks(image: GgufImage): AsyncGenerator<Uint8Array> {
  const { head, sizes, alignment } = ggufHead(image);
  yield head;
  for (let i = 0; i < image.tensors.length; i++) {
    const t = image.tensors[i];
    const data = await t.data();
    if (data.byteLength !== sizes[i]) {
      throw new LoraError('E_SHAPE', `GGUF tensor "${t.name}": ${t.type}[${t.shape.join(', ')}] needs ${sizes[i]} bytes, got ${data.byteLength}`);
    }
    yield data;
    const pad = alignUp(sizes[i], alignment) - sizes[i];
    if (pad) yield new Uint8Array(pad);
  }
}

/** Writes a GGUF file atomically; returns its size in bytes. */
export function writeGguf(path: string, image: GgufImage): Promise<number> {
  return writeStreamAtomic(path, ggufChunks(image));
}

/** Small helpers to build metadata maps without spelling the type objects out. */
export const kv = {
  str: (value: string): GgufValue => ({ type: 'string', value }),
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  arr: (itemType: GgufScalarType, values: readonly GgufScalar[]): GgufValue => ({ type: 'array', itemType, values }),
};
