// A minimal TensorBoard event writer: a TFRecord file (each record: u64 length, masked crc32c of
// the length, the bytes, masked crc32c of the bytes; all little-endian) of `Event` protos
// (tensorflow/core/util/event.proto: wall_time = 1 double, step = 2 int64, file_version = 3 string,
// summary = 5) whose `Summary` (summary.proto: repeated Value value = 1; Value: tag = 1 string,
// simple_value = 2 float) carries one scalar. Writes are synchronous and small (~60 bytes a scalar),
// so a step's scalars cost microseconds; the file is fsynced on close.
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as TFRecord uses. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masking: rotate right by 15 and add a constant, so CRCs of CRCs stay useful. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Protocol-buffer encoding of the few field types an Event needs. */
class Proto {
  private readonly parts: number[] = [];

  private varint(v: bigint | number): void {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.parts.push(Number((x & 0x7fn) | 0x80n));
      x >>= 7n;
    }
    this.parts.push(Number(x));
  }

  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  double(field: number, v: number): this {
    this.key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.parts.push(...b);
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(...b);
    return this;
  }

  int64(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }

  bytes(field: number, v: Uint8Array | string): this {
    const b = typeof v === 'string' ? new TextEncoder().encode(v) : v;
    this.key(field, 2);
    this.varint(b.length);
    this.parts.push(...b);
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** One TFRecord frame around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

export class TensorBoardWriter {
  readonly path: string;
  private fd: number | undefined;

  /** Opens `dir/events.out.tfevents.<seconds>.<host>.<pid>.0` (TensorBoard's file-name pattern). */
  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}.${process.pid}.0`);
    this.fd = openSync(this.path, 'w');
    this.write(new Proto().double(1, Date.now() / 1000).int64(2, 0).bytes(3, 'brain.Event:2').finish());
  }

  private write(event: Uint8Array): void {
    if (this.fd === undefined) return;
    const rec = tfRecord(event);
    let done = 0;
    while (done < rec.length) done += writeSync(this.fd, rec, done, rec.length - done);
  }

  /** A scalar under `tag` at `step` (TensorBoard's simple_value, stored as f32). */
  scalar(tag: string, value: number, step: number): void {
    const value_ = new Proto().bytes(1, tag).float(2, value).finish();
    const summary = new Proto().bytes(1, value_).finish();
    this.write(new Proto().double(1, Date.now() / 1000).int64(2, step).bytes(5, summary).finish());
  }

  close(): void {
    if (this.fd === undefined) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = undefined;
  }
}
