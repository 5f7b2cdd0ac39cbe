import type { FileHandle } from 'node:fs/promises';
import { viewAs } from './dtype.js';
import { LoraError } from './errors.js';
import { openForRead, readExactly } from './file-range.js';
import { parseHeaderJson, parseHeaderLength, type SafetensorsEntry, type SafetensorsHeader } from './safetensors-header.js';
import type { RawTensor, TensorInfo, WeightSource } from './tensor.js';

/**
 * A safetensors file opened for lazy reads: only the header is read up front, and each tensor's
 * bytes are read at their offset when asked for, so a 700 MB checkpoint never sits in one buffer.
 */
export class SafetensorsFile implements WeightSource, AsyncDisposable {
  private handle: FileHandle | undefined;

  private constructor(
    readonly path: string,
    handle: FileHandle,
    private readonly header: SafetensorsHeader,
  ) {
    this.handle = handle;
  }

  static async open(path: string): Promise<SafetensorsFile> {
    const { handle, size } = await openForRead(path);
    try {
      const prefix = await readExactly(handle, 0, Math.min(8, size), path);
      const headerLength = parseHeaderLength(prefix, size, path);
      const headerBytes = await readExactly(handle, 8, headerLength, path);
      return new SafetensorsFile(path, handle, parseHeaderJson(headerBytes, size, path));
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** The `__metadata__` strings, e.g. `{ format: 'pt' }`. */
  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  keys(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const { dtype, shape } = this.entry(name);
    return { dtype, shape: [...shape] };
  }

  async read(name: string): Promise<RawTensor> {
    const e = this.entry(name);
    if (!this.handle) throw new LoraError('E_FILE_NOT_FOUND', `${this.path}: read("${name}") after close()`);
    const bytes = await readExactly(this.handle, this.header.dataStart + e.begin, e.end - e.begin, this.path);
    return { dtype: e.dtype, shape: [...e.shape], data: viewAs(e.dtype, bytes.buffer as ArrayBuffer) };
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private entry(name: string): SafetensorsEntry {
    const e = this.header.tensors.get(name);
    if (!e) throw new LoraError('E_TENSOR_NOT_FOUND', `${this.path}: no tensor named "${name}"`);
    return e;
  }
}

/** Parses a whole safetensors image already in memory (small files: adapters, fixtures). */
export function parseSafetensors(bytes: Uint8Array, where = '<buffer>'): { metadata: Record<string, string>; tensors: Map<string, RawTensor> } {
  const headerLength = parseHeaderLength(bytes, bytes.byteLength, where);
  const header = parseHeaderJson(bytes.subarray(8, 8 + headerLength), bytes.byteLength, where);
  const tensors = new Map<string, RawTensor>();
  for (const [name, e] of header.tensors) {
    // Copy out: the source offset is rarely aligned for the typed array, and callers may keep the tensor.
    const copy = bytes.slice(header.dataStart + e.begin, header.dataStart + e.end);
    tensors.set(name, { dtype: e.dtype, shape: [...e.shape], data: viewAs(e.dtype, copy.buffer as ArrayBuffer) });
  }
  return { metadata: header.metadata, tensors };
}
