import { writeFileAtomic } from './atomic-write.js';
import { isDType, itemSize, numel } from './dtype.js';
import { LoraError } from './errors.js';
import type { RawTensor } from './tensor.js';

export type TensorMap = Map<string, RawTensor> | Record<string, RawTensor>;

const entriesOf = (tensors: TensorMap): [string, RawTensor][] =>
  tensors instanceof Map ? [...tensors] : Object.entries(tensors);

/**
 * Lays out a safetensors image as chunks (header, then each tensor's bytes, no copies of the data).
 * Like the reference writer, tensors go in order of decreasing item size then name, so every
 * tensor starts aligned to its item size, and the header is padded with spaces to a multiple of 8.
 */
export function serializeSafetensors(tensors: TensorMap, metadata?: Record<string, string>): Uint8Array[] {
  const list = entriesOf(tensors);
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new LoraError('E_SAFETENSORS_HEADER', 'a tensor cannot be named "__metadata__"');
    if (!isDType(t.dtype)) throw new LoraError('E_DTYPE', `tensor "${name}" has unknown dtype ${String(t.dtype)}`);
    const want = numel(t.shape) * itemSize(t.dtype);
    if (t.data.byteLength !== want) {
      throw new LoraError('E_SHAPE', `tensor "${name}": ${t.dtype}[${t.shape.join(', ')}] needs ${want} bytes, data has ${t.data.byteLength}`);
    }
  }
  list.sort(([na, a], [nb, b]) => itemSize(b.dtype) - itemSize(a.dtype) || (na < nb ? -1 : na > nb ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of list) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return [head, ...list.map(([, t]) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
}

/** The whole image in one buffer; for small payloads and tests. */
export function encodeSafetensors(tensors: TensorMap, metadata?: Record<string, string>): Uint8Array {
  return Buffer.concat(serializeSafetensors(tensors, metadata));
}

/** Writes a safetensors file atomically (temp file + fsync + rename). */
export async function writeSafetensors(path: string, tensors: TensorMap, metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}
