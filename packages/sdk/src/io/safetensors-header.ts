import { isDType, itemSize, numel, type DType } from './dtype.js';
import { LoraError } from './errors.js';
import { findDuplicateTopLevelKey } from './json-keys.js';
import { jsonSyntaxError } from './safe-file.js';

/** One tensor's entry; `begin`/`end` are byte offsets relative to the start of the data section. */
export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Byte offset of the data section in the file: 8 + header length. */
  dataStart: number;
  metadata: Record<string, string>;
  /** Entries in header order. */
  tensors: Map<string, SafetensorsEntry>;
}

/** Same limit as the reference implementation: a bigger header is an attack, not a model. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const fail = (code: ConstructorParameters<typeof LoraError>[0], where: string, msg: string) =>
  new LoraError(code, `${where}: ${msg}`);

/** Reads the 8-byte little-endian header length and checks it against the file size. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, where: string): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw fail('E_SAFETENSORS_TRUNCATED', where, `file is ${fileSize} bytes, too short for the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw fail('E_SAFETENSORS_TRUNCATED', where, `header length ${n} goes beyond the end of the ${fileSize}-byte file`);
  }
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw fail('E_SAFETENSORS_HEADER', where, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  if (n < 2n) throw fail('E_SAFETENSORS_HEADER', where, `header length ${n} is too small for a JSON object`);
  return Number(n);
}

/**
 * Validates a header as strictly as the reference implementation: every entry well-formed, byte
 * sizes matching shape × item size, and the entries tiling the data section exactly — no overlap,
 * no gap, nothing past the end (which is how a truncated file shows up).
 */
export function parseHeaderJson(headerBytes: Uint8Array, fileSize: number, where: string): SafetensorsHeader {
  const dataStart = 8 + headerBytes.byteLength;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw fail('E_SAFETENSORS_HEADER', where, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw fail('E_SAFETENSORS_HEADER', where, 'header does not start with "{"');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw fail('E_SAFETENSORS_HEADER', where, `header is not valid JSON (${jsonSyntaxError(err)})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw fail('E_SAFETENSORS_HEADER', where, 'header is not a JSON object');
  }
  const dup = findDuplicateTopLevelKey(text);
  if (dup !== undefined) throw fail('E_DUPLICATE_KEY', where, `tensor "${dup}" appears twice in the header`);

  const metadata = parseMetadata((raw as Record<string, unknown>).__metadata__, where);
  const tensors = new Map<string, SafetensorsEntry>();
  for (const [name, value] of Object.entries(raw)) {
    if (name === '__metadata__') continue;
    tensors.set(name, parseEntry(name, value, where));
  }
  checkTiling(tensors, fileSize - dataStart, where);
  return { dataStart, metadata, tensors };
}

function parseMetadata(value: unknown, where: string): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail('E_SAFETENSORS_HEADER', where, '__metadata__ must be an object of strings');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw fail('E_SAFETENSORS_HEADER', where, `__metadata__.${k} is not a string`);
    out[k] = v;
  }
  return out;
}

/** A header value for an error message, cut short: a header may hold up to 100 MB of anything. */
const brief = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
};

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function parseEntry(name: string, value: unknown, where: string): SafetensorsEntry {
  const at = `${where}: tensor "${name}"`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LoraError('E_SAFETENSORS_HEADER', `${at} is not an object`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isDType(dtype)) throw new LoraError('E_DTYPE', `${at} has unknown dtype ${brief(dtype)}`);
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw new LoraError('E_SHAPE', `${at} has an invalid shape ${brief(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex) || offsets[0] > offsets[1]) {
    throw new LoraError('E_SAFETENSORS_OFFSETS', `${at} has invalid data_offsets ${brief(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const expected = numel(shape) * itemSize(dtype);
  if (!Number.isSafeInteger(expected) || expected !== end - begin) {
    throw new LoraError(
      'E_SHAPE',
      `${at}: ${dtype}[${shape.join(', ')}] needs ${expected} bytes but data_offsets span ${end - begin}`,
    );
  }
  return { dtype, shape: [...shape], begin, end };
}

function checkTiling(tensors: Map<string, SafetensorsEntry>, dataSize: number, where: string): void {
  const sorted = [...tensors].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prevName = '';
  for (const [name, e] of sorted) {
    if (e.begin < cursor) {
      throw fail('E_SAFETENSORS_OFFSETS', where, `tensor "${name}" overlaps "${prevName}" (starts at ${e.begin}, previous ends at ${cursor})`);
    }
    if (e.begin > cursor) {
      throw fail('E_SAFETENSORS_OFFSETS', where, `gap of ${e.begin - cursor} bytes before tensor "${name}"`);
    }
    cursor = e.end;
    prevName = name;
  }
  if (cursor > dataSize) {
    throw fail('E_SAFETENSORS_TRUNCATED', where, `tensor data needs ${cursor} bytes but the file holds only ${Math.max(dataSize, 0)} after the header (truncated?)`);
  }
  if (cursor < dataSize) {
    throw fail('E_SAFETENSORS_OFFSETS', where, `${dataSize - cursor} trailing bytes after the last tensor`);
  }
}
