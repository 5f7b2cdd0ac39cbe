import type { FileHandle } from 'node:fs/promises';
import { crc32, inflateRawSync } from 'node:zlib';
import { LoraError } from './errors.js';
import { openForRead, readExactly } from './file-range.js';

/** One member of a ZIP archive, from its central-directory record. */
export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate; nothing else is readable here. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const MAX_EOCD_SEARCH = 22 + 0xffff; // the record plus the longest comment

/**
 * A read-only ZIP archive over positional reads: the central directory is parsed once, members are
 * read on demand (whole, or a byte range of a stored member). torch.save writes stored (uncompressed)
 * members, 64-byte aligned, with zip64 fields once the archive passes 4 GiB; deflate is supported
 * through node:zlib for archives repacked by other tools. Encrypted members are refused.
 */
export class ZipArchive implements AsyncDisposable {
  private handle: FileHandle | undefined;
  private readonly dataStart = new Map<string, number>();

  private constructor(
    readonly path: string,
    handle: FileHandle,
    readonly size: number,
    readonly entries: Map<string, ZipEntry>,
  ) {
    this.handle = handle;
  }

  static async open(path: string): Promise<ZipArchive> {
    const { handle, size } = await openForRead(path);
    try {
      const entries = await readCentralDirectory(handle, size, path);
      return new ZipArchive(path, handle, size, entries);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new LoraError('E_ZIP', `${this.path}: no member named "${name}"`);
    return e;
  }

  /** The member's bytes, CRC-checked. */
  async read(name: string): Promise<Uint8Array> {
    const e = this.entry(name);
    const start = await this.memberDataStart(e);
    const raw = await readExactly(this.fileHandle(), start, e.compressedSize, this.path).catch((err) => {
      throw this.truncated(name, err);
    });
    let bytes = raw;
    if (e.method === 8) {
      try {
        bytes = new Uint8Array(inflateRawSync(raw, { maxOutputLength: Math.max(e.size, 1) }));
      } catch (err) {
        throw new LoraError('E_ZIP', `${this.path}: member "${name}" does not inflate (${(err as Error).message})`);
      }
      if (bytes.byteLength !== e.size) {
        throw new LoraError('E_ZIP', `${this.path}: member "${name}" inflates to ${bytes.byteLength} bytes, directory says ${e.size}`);
      }
    }
    if (crc32(bytes) >>> 0 !== e.crc32) throw new LoraError('E_ZIP', `${this.path}: member "${name}" fails its CRC-32 check (corrupt file)`);
    return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
  }

  /**
   * `length` bytes from `offset` into a member, without reading the rest: how a tensor is pulled
   * out of a large storage. Deflated members have no random access, so those are read whole.
   */
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const e = this.entry(name);
    if (offset < 0 || length < 0 || offset + length > e.size) {
      throw new LoraError('E_ZIP', `${this.path}: bytes [${offset}, ${offset + length}) are outside member "${name}" of ${e.size} bytes`);
    }
    if (e.method !== 0) return (await this.read(name)).slice(offset, offset + length);
    const start = await this.memberDataStart(e);
    return readExactly(this.fileHandle(), start + offset, length, this.path).catch((err) => {
      throw this.truncated(name, err);
    });
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private fileHandle(): FileHandle {
    if (!this.handle) throw new LoraError('E_ZIP', `${this.path}: archive used after close()`);
    return this.handle;
  }

  private truncated(name: string, cause: unknown): LoraError {
    return new LoraError('E_ZIP', `${this.path}: member "${name}" runs past the end of the file (truncated?)`, { cause });
  }

  /** The local header repeats the name and has its own extra field, so data starts are per member. */
  private async memberDataStart(e: ZipEntry): Promise<number> {
    const cached = this.dataStart.get(e.name);
    if (cached !== undefined) return cached;
    if (e.localHeaderOffset + 30 > this.size) throw this.truncated(e.name, undefined);
    const lh = await readExactly(this.fileHandle(), e.localHeaderOffset, 30, this.path);
    const v = new DataView(lh.buffer);
    if (v.getUint32(0, true) !== SIG_LOCAL) {
      throw new LoraError('E_ZIP', `${this.path}: member "${e.name}" has no local header at offset ${e.localHeaderOffset}`);
    }
    const start = e.localHeaderOffset + 30 + v.getUint16(26, true) + v.getUint16(28, true);
    if (start + e.compressedSize > this.size) throw this.truncated(e.name, undefined);
    this.dataStart.set(e.name, start);
    return start;
  }
}

async function readCentralDirectory(handle: FileHandle, size: number, path: string): Promise<Map<string, ZipEntry>> {
  const bad = (msg: string) => new LoraError('E_ZIP', `${path}: ${msg}`);
  if (size < 22) throw bad(`${size} bytes is too short to be a ZIP archive (truncated?)`);
  const tailLength = Math.min(size, MAX_EOCD_SEARCH);
  const tail = await readExactly(handle, size - tailLength, tailLength, path);
  const tv = new DataView(tail.buffer);
  let eocd = -1;
  for (let i = tailLength - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_EOCD && i + 22 + tv.getUint16(i + 20, true) === tailLength) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad('no end-of-central-directory record: not a ZIP archive, or truncated');

  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0) throw bad('multi-disk archives are not supported');
  // Any field saturated to all-ones means the real value lives in the zip64 record.
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || tv.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) throw bad('zip64 locator missing');
    const recOffset = toSafe(tv.getBigUint64(loc + 8, true), 'zip64 record offset', path);
    if (recOffset + 56 > size) throw bad('zip64 end record lies beyond the end of the file');
    const rec = new DataView((await readExactly(handle, recOffset, 56, path)).buffer);
    if (rec.getUint32(0, true) !== SIG_ZIP64_EOCD) throw bad('zip64 end record signature mismatch');
    count = toSafe(rec.getBigUint64(32, true), 'entry count', path);
    cdSize = toSafe(rec.getBigUint64(40, true), 'central directory size', path);
    cdOffset = toSafe(rec.getBigUint64(48, true), 'central directory offset', path);
  }
  if (cdOffset + cdSize > size) throw bad(`central directory [${cdOffset}, ${cdOffset + cdSize}) lies beyond the ${size}-byte file (truncated?)`);

  const cd = await readExactly(handle, cdOffset, cdSize, path);
  const v = new DataView(cd.buffer);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || v.getUint32(p, true) !== SIG_CENTRAL) throw bad(`central directory record ${i} is corrupt`);
    const flags = v.getUint16(p + 8, true);
    const method = v.getUint16(p + 10, true);
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw bad(`central directory record ${i} runs past the directory`);
    const name = new TextDecoder().decode(cd.subarray(p + 46, p + 46 + nameLen));
    const entry: ZipEntry = {
      name,
      method,
      crc32: v.getUint32(p + 16, true),
      compressedSize: v.getUint32(p + 20, true),
      size: v.getUint32(p + 24, true),
      localHeaderOffset: v.getUint32(p + 42, true),
    };
    applyZip64Extra(entry, cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen), path);
    if (flags & 0x1) throw bad(`member "${name}" is encrypted`);
    if (method !== 0 && method !== 8) throw bad(`member "${name}" uses compression method ${method}; only stored (0) and deflate (8) are readable`);
    if (entries.has(name)) throw bad(`member "${name}" appears twice`);
    entries.set(name, entry);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** The zip64 extra field (id 1) holds 64-bit values for exactly those fields saturated in the record. */
function applyZip64Extra(e: ZipEntry, extra: Uint8Array, path: string): void {
  const v = new DataView(extra.buffer, extra.byteOffset, extra.byteLength);
  for (let p = 0; p + 4 <= extra.byteLength; ) {
    const id = v.getUint16(p, true);
    const len = v.getUint16(p + 2, true);
    if (id === 0x0001) {
      let q = p + 4;
      const next = (field: string) => {
        if (q + 8 > p + 4 + len) throw new LoraError('E_ZIP', `${path}: member "${e.name}" has a short zip64 field`);
        const value = toSafe(v.getBigUint64(q, true), field, path);
        q += 8;
        return value;
      };
      if (e.size === 0xffffffff) e.size = next('size');
      if (e.compressedSize === 0xffffffff) e.compressedSize = next('compressed size');
      if (e.localHeaderOffset === 0xffffffff) e.localHeaderOffset = next('local header offset');
      return;
    }
    p += 4 + len;
  }
}

function toSafe(n: bigint, field: string, path: string): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new LoraError('E_ZIP', `${path}: ${field} ${n} is too large`);
  return Number(n);
}
