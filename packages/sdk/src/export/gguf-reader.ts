// An independent GGUF v3 reader (written from docs/gguf.md, sharing no code with the writer): it
// parses a whole file and accounts for every byte — header, metadata, tensor infos, the padding
// before the data section (zeros), each tensor's bytes at its aligned offset, and the zero padding
// between tensors — and fails naming the first byte that is not where the spec says.
import { LoraError } from '../io/errors.js';
import { f16ToF32, bf16ToF32 } from '../io/dtype.js';

export type GgufReadValue = { type: number; value: unknown; itemType?: number };

export interface GgufReadTensor {
  name: string;
  /** ggml order: ne[0] innermost. */
  ne: number[];
  type: number;
  /** Offset relative to the data section. */
  offset: number;
  /** Absolute file offset of the first byte, and the byte count its type and shape imply. */
  start: number;
  bytes: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufReadValue>;
  tensors: GgufReadTensor[];
  alignment: number;
  dataStart: number;
  buffer: Uint8Array;
}

const fail = (msg: string): never => { throw new LoraError('E_CONFIG', `GGUF: ${msg}`); };

/** Block geometry by ggml type id, for the types this project reads back. */
const BLOCKS: Record<number, [elements: number, bytes: number]> = { 0: [1, 4], 1: [1, 2], 30: [1, 2], 8: [32, 34], 2: [32, 18] };

class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(private readonly b: Uint8Array) { this.view = new DataView(b.buffer, b.byteOffset, b.byteLength); }
  need(n: number) { if (this.pos + n > this.b.length) fail(`truncated at byte ${this.pos} (needed ${n} more)`); }
  u8() { this.need(1); return this.view.getUint8(this.pos++); }
  i8() { this.need(1); return this.view.getInt8(this.pos++); }
  u16() { this.need(2); const v = this.view.getUint16(this.pos, true); this.pos += 2; return v; }
  i16() { this.need(2); const v = this.view.getInt16(this.pos, true); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  i32() { this.need(4); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  f32() { this.need(4); const v = this.view.getFloat32(this.pos, true); this.pos += 4; return v; }
  f64() { this.need(8); const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  u64() { this.need(8); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }
  i64() { this.need(8); const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }
  size() { const v = this.u64(); if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`size ${v} at byte ${this.pos - 8} is absurd`); return Number(v); }
  str() {
    const n = this.size();
    this.need(n);
    const s = new TextDecoder('utf-8', { fatal: true }).decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  value(type: number): unknown {
    switch (type) {
      case 0: return this.u8();
      case 1: return this.i8();
      case 2: return this.u16();
      case 3: return this.i16();
      case 4: return this.u32();
      case 5: return this.i32();
      case 6: return this.f32();
      case 7: { const b = this.u8(); if (b > 1) fail(`bool byte ${b} at ${this.pos - 1}`); return b === 1; }
      case 8: return this.str();
      case 10: return this.u64();
      case 11: return this.i64();
      case 12: return this.f64();
      default: return fail(`unknown value type ${type} at byte ${this.pos - 4}`);
    }
  }
}

export function readGguf(buffer: Uint8Array): GgufFile {
  const c = new Cursor(buffer);
  if (c.u32() !== 0x46554747) fail('bad magic (not a GGUF file)');
  const version = c.u32();
  if (version !== 3) fail(`version ${version}, expected 3`);
  const nTensors = c.size();
  const nKv = c.size();
  const metadata = new Map<string, GgufReadValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str();
    if (metadata.has(key)) fail(`duplicate key ${key}`);
    const type = c.u32();
    if (type === 9) {
      const itemType = c.u32();
      if (itemType === 9) fail(`${key}: nested arrays are not written by this project`);
      const n = c.size();
      const values: unknown[] = [];
      for (let j = 0; j < n; j++) values.push(c.value(itemType));
      metadata.set(key, { type, itemType, value: values });
    } else {
      metadata.set(key, { type, value: c.value(type) });
    }
  }
  const al = metadata.get('general.alignment');
  if (al && al.type !== 4) fail('general.alignment must be a u32');
  const alignment = al ? (al.value as number) : 32;
  const raw: { name: string; ne: number[]; type: number; offset: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = c.str();
    const nDims = c.u32();
    if (nDims < 1 || nDims > 4) fail(`${name}: ${nDims} dims`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(c.size());
    const type = c.u32();
    const offset = c.size();
    raw.push({ name, ne, type, offset });
  }
  const infoEnd = c.pos;
  const dataStart = Math.ceil(infoEnd / alignment) * alignment;
  expectZeros(buffer, infoEnd, dataStart, 'padding before the data section');
  const tensors: GgufReadTensor[] = [];
  let cursor = 0;
  for (const t of raw) {
    const geo = BLOCKS[t.type] ?? fail(`${t.name}: ggml type ${t.type} is not one this reader knows`);
    if (t.ne[0] % geo[0] !== 0) fail(`${t.name}: ne[0] = ${t.ne[0]} is not a whole number of ${geo[0]}-element blocks`);
    const bytes = (t.ne.reduce((a, b) => a * b, 1) / geo[0]) * geo[1];
    if (t.offset % alignment !== 0) fail(`${t.name}: offset ${t.offset} is not a multiple of ${alignment}`);
    if (t.offset !== cursor) fail(`${t.name}: data at offset ${t.offset}, expected ${cursor} (right after the previous tensor, aligned)`);
    const start = dataStart + t.offset;
    if (start + bytes > buffer.length) fail(`${t.name}: data runs past the end of the file`);
    const end = Math.ceil((t.offset + bytes) / alignment) * alignment;
    expectZeros(buffer, start + bytes, Math.min(dataStart + end, buffer.length), `padding after ${t.name}`);
    cursor = end;
    tensors.push({ ...t, start, bytes });
  }
  if (buffer.length !== dataStart + cursor) fail(`file is ${buffer.length} bytes, the layout accounts for ${dataStart + cursor}`);
  return { version, metadata, tensors, alignment, dataStart, buffer };
}

function expectZeros(b: Uint8Array, from: number, to: number, what: string): void {
  for (let i = from; i < to; i++) if (b[i] !== 0) fail(`${what}: byte ${i} is ${b[i]}, expected 0`);
}

/** A tensor's values as f32, decoded from its ggml layout (independent of gguf-quant.ts). */
export function ggufTensorF32(file: GgufFile, name: string): Float32Array {
  const t = file.tensors.find((x) => x.name === name) ?? fail(`no tensor ${name}`);
  const bytes = file.buffer.slice(t.start, t.start + t.bytes);
  const view = new DataView(bytes.buffer);
  const n = t.ne.reduce((a, b) => a * b, 1);
  const half = (off: number) => f16ToF32(Uint16Array.of(view.getUint16(off, true)))[0];
  switch (t.type) {
    case 0: return new Float32Array(bytes.buffer);
    case 1: return f16ToF32(new Uint16Array(bytes.buffer));
    case 30: return bf16ToF32(new Uint16Array(bytes.buffer));
    case 8: {
      const out = new Float32Array(n);
      for (let b = 0; b < n / 32; b++) {
        const d = half(b * 34);
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * view.getInt8(b * 34 + 2 + j);
      }
      return out;
    }
    case 2: {
      const out = new Float32Array(n);
      for (let b = 0; b < n / 32; b++) {
        const d = half(b * 18);
        for (let j = 0; j < 16; j++) {
          const q = bytes[b * 18 + 2 + j];
          out[b * 32 + j] = ((q & 0x0f) - 8) * d;
          out[b * 32 + 16 + j] = ((q >> 4) - 8) * d;
        }
      }
      return out;
    }
    default: return fail(`${name}: cannot decode ggml type ${t.type}`);
  }
}

/** A metadata value by key, failing with the key's name when it is missing. */
export function ggufValue<T = unknown>(file: GgufFile, key: string): T {
  const v = file.metadata.get(key) ?? fail(`missing metadata ${key}`);
  return v.value as T;
}
