import type { FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { crc32, createInflateRaw } from 'node:zlib';
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
/** Deflate expands at most ~1032:1 (a 258-byte match per 2-bit code); a directory claiming more lies. */
const MAX_DEFLATE_RATIO = 1032;
/** Read size for CRC checks and inflation: large enough for full disk speed, small next to any model. */
const CHUNK_BYTES = 1 << 20;

/**
 * A read-only ZIP archive over positional reads: the central directory is parsed once, members are
 * read on demand (whole, or a byte range), every read checked against the member's CRC-32. torch.save
 * writes stored (uncompressed) members, 64-byte aligned, with zip64 fields once the archive passes
 * 4 GiB; deflate is supported through node:zlib (streamed, capped at the declared size) for archives
 * repacked by other tools. Encrypted members are refused.
 */
export class ZipArchive implements AsyncDisposable {
  private handle: FileHandle | undefined;
  private readonly dataStart = new Map<string, number>();
  /** Stored members whose CRC-32 has been checked over their whole length. */
  private readonly verified = new Set<string>();

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
      checkTotalSize(entries, size, path);
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

  /**
   * The member's bytes, CRC-checked. `maxBytes` refuses a member that declares more before anything
   * is read; a deflated member is inflated as a stream that stops at its declared size, so a small
   * archive cannot make this allocate more than it admits to (the "zip bomb" of a 4 MB file that
   * inflated to gigabytes).
   */
  async read(name: string, { maxBytes }: { maxBytes?: number } = {}): Promise<Uint8Array> {
    const e = this.entry(name);
    if (maxBytes !== undefined && e.size > maxBytes) {
      throw new LoraError('E_TOO_LARGE', `${this.path}: member "${name}" declares ${e.size} bytes; at most ${maxBytes} are accepted for it`);
    }
    return this.readRange(name, 0, e.size);
  }

  /**
   * `length` bytes from `offset` into a member. Every read is checked against the member's CRC-32:
   * a whole stored member on the bytes read, a part of one by streaming the member once (then
   * remembered), a deflated member by inflating it as a stream and keeping only the range.
   */
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const e = this.entry(name);
    if (offset < 0 || length < 0 || offset + length > e.size) {
      throw new LoraError('E_ZIP', `${this.path}: bytes [${offset}, ${offset + length}) are outside member "${name}" of ${e.size} bytes`);
    }
    const start = await this.memberDataStart(e);
    if (e.method === 8) return this.inflateRange(e, start, offset, length);
    if (offset === 0 && length === e.size) {
      const bytes = await this.readStored(e, start, 0, length);
      this.checkCrc(e, crc32(bytes));
      this.verified.add(e.name);
      return bytes;
    }
    if (!this.verified.has(e.name)) {
      this.checkCrc(e, await this.streamCrc(e, start));
      this.verified.add(e.name);
    }
    return this.readStored(e, start, offset, length);
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

  private readStored(e: ZipEntry, start: number, offset: number, length: number): Promise<Uint8Array> {
    return readExactly(this.fileHandle(), start + offset, length, this.path).catch((err) => {
      throw this.truncated(e.name, err);
    });
  }

  private checkCrc(e: ZipEntry, crc: number): void {
    if (crc >>> 0 !== e.crc32) {
      throw new LoraError('E_CHECKSUM', `${this.path}: member "${e.name}" fails its CRC-32 check (the file is corrupt: re-download or re-save it)`);
    }
  }

  /** CRC-32 of a stored member, read in chunks so that checking a part of a big storage stays cheap in memory. */
  private async streamCrc(e: ZipEntry, start: number): Promise<number> {
    const chunk = new Uint8Array(Math.min(CHUNK_BYTES, e.size));
    let crc = 0;
    for (let done = 0; done < e.size; ) {
      const n = Math.min(chunk.byteLength, e.size - done);
      const { bytesRead } = await this.fileHandle().read(chunk, 0, n, start + done);
      if (bytesRead === 0) throw this.truncated(e.name, undefined);
      crc = crc32(chunk.subarray(0, bytesRead), crc);
      done += bytesRead;
    }
    return crc;
  }

  /**
   * Inflates a deflated member as a stream: the output is counted (more than the declared size is an
   * error at once), CRC'd, and only [offset, offset + length) is kept.
   */
  private async inflateRange(e: ZipEntry, start: number, offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    const handle = this.fileHandle();
    const path = this.path;
    let produced = 0;
    let crc = 0;
    const compressed = async function* () {
      for (let done = 0; done < e.compressedSize; done += CHUNK_BYTES) {
        yield await readExactly(handle, start + done, Math.min(CHUNK_BYTES, e.compressedSize - done), path);
      }
    };
    const keep = async (chunks: AsyncIterable<Buffer>) => {
      for await (const c of chunks) {
        if (produced + c.byteLength > e.size) {
          throw new LoraError('E_ZIP', `${path}: member "${e.name}" inflates past the ${e.size} bytes its directory entry declares`);
        }
        crc = crc32(c, crc);
        const from = Math.max(offset, produced);
        const to = Math.min(offset + length, produced + c.byteLength);
        if (to > from) out.set(c.subarray(from - produced, to - produced), from - offset);
        produced += c.byteLength;
      }
    };
    try {
      await pipeline(compressed, createInflateRaw({ chunkSize: 64 * 1024 }), keep);
    } catch (err) {
      if (err instanceof LoraError) throw err;
      throw new LoraError('E_ZIP', `${path}: member "${e.name}" does not inflate (${(err as Error).message})`);
    }
    if (produced !== e.size) throw new LoraError('E_ZIP', `${path}: member "${e.name}" inflates to ${produced} bytes, directory says ${e.size}`);
    this.checkCrc(e, crc);
    return out;
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
    if (method === 0 && entry.size !== entry.compressedSize) throw bad(`stored member "${name}" declares ${entry.size} bytes but holds ${entry.compressedSize}`);
    if (method === 8 && entry.size > entry.compressedSize * MAX_DEFLATE_RATIO + 1024) {
      throw bad(`member "${name}" declares ${entry.size} bytes from ${entry.compressedSize} compressed, more than deflate can produce`);
    }
    entries.set(name, entry);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/**
 * What all members may declare together: tensor data compresses a little (bf16/f32 weights 1.0-1.3x)
 * and no real checkpoint is mostly zeros, so 16x the file (plus 16 MiB for tiny archives) is a
 * generous bound; beyond it the archive is a bomb, refused before any member is inflated.
 */
const MAX_TOTAL_RATIO = 16;
const TOTAL_SLACK_BYTES = 16 * 1024 * 1024;

function checkTotalSize(entries: Map<string, ZipEntry>, fileSize: number, path: string): void {
  let total = 0;
  for (const e of entries.values()) total += e.size;
  const limit = fileSize * MAX_TOTAL_RATIO + TOTAL_SLACK_BYTES;
  if (total > limit) {
    throw new LoraError('E_TOO_LARGE', `${path}: members declare ${total} bytes in all, more than ${MAX_TOTAL_RATIO}x the ${fileSize}-byte archive (a zip bomb?)`);
  }
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
