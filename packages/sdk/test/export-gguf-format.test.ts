// The GGUF writer against the independent reader: every metadata type round-trips, every byte of
// the file is accounted for (the reader fails on a stray byte), and the q8_0 / q4_0 blocks hold the
// exact bytes ggml's reference quantizers produce for hand-computed inputs.
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { writeGguf, kv, ggufHead, type GgufImage } from '../src/export/gguf-writer.js';
import { readGguf, ggufTensorF32 } from '../src/export/gguf-reader.js';
import { encodeTensor, encodeTensorYielding, quantizeQ4_0, quantizeQ8_0 } from '../src/export/gguf-quant.js';
import type { GgufValue } from '../src/export/gguf-format.js';

const dir = await mkdtemp(join(tmpdir(), 'gguf-fmt-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const ramp = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));

function image(alignment?: number): GgufImage {
  const metadata = new Map<string, GgufValue>([
    ['general.architecture', kv.str('llama')],
    ['t.u8', { type: 'u8', value: 250 }], ['t.i8', { type: 'i8', value: -7 }],
    ['t.u16', { type: 'u16', value: 65000 }], ['t.i16', { type: 'i16', value: -30000 }],
    ['t.u32', kv.u32(4_000_000_000)], ['t.i32', kv.i32(-2_000_000_000)], ['t.f32', kv.f32(0.5)],
    ['t.bool', kv.bool(true)], ['t.str', kv.str('héllo ✓')], ['t.u64', { type: 'u64', value: 2n ** 60n }],
    ['t.i64', { type: 'i64', value: -(2n ** 50n) }], ['t.f64', { type: 'f64', value: Math.PI }],
    ['t.arr.str', kv.arr('string', ['a', '', 'Ġb c'])], ['t.arr.i32', kv.arr('i32', [1, -2, 3])],
    ['t.arr.empty', kv.arr('f32', [])],
  ]);
  if (alignment) metadata.set('general.alignment', kv.u32(alignment));
  const w = ramp(3 * 64, (i) => Math.sin(i * 0.37) * (1 + (i % 5)));
  return {
    metadata,
    tensors: [
      { name: 'a.f32', shape: [3, 5], type: 'f32', data: () => new Uint8Array(ramp(15, (i) => i - 7).buffer) },
      { name: 'b.f16', shape: [7], type: 'f16', data: () => new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0, 0x7bff, 1, 0x8001, 0x3555]).buffer) },
      { name: 'c.bf16', shape: [2, 3], type: 'bf16', data: () => new Uint8Array(new Uint16Array([0x3f80, 0xbf80, 0x4000, 0, 0x4049, 0x3f00]).buffer) },
      { name: 'd.q8_0', shape: [3, 64], type: 'q8_0', data: () => quantizeQ8_0(w) },
      { name: 'e.q4_0', shape: [3, 64], type: 'q4_0', data: () => quantizeQ4_0(w) },
    ],
  };
}

describe('GGUF writer and reader', () => {
  it('writes a v3 file whose every byte the reader accounts for, at alignment 32 and 64', async () => {
    for (const alignment of [undefined, 64]) {
      const path = join(dir, `t${alignment ?? 32}.gguf`);
      const size = await writeGguf(path, image(alignment));
      const buf = new Uint8Array(await readFile(path));
      expect(buf.length).toBe(size);
      // Fixed header fields at the offsets the spec gives.
      const v = new DataView(buf.buffer);
      expect(new TextDecoder().decode(buf.subarray(0, 4))).toBe('GGUF');
      expect(v.getUint32(4, true)).toBe(3);
      expect(v.getBigUint64(8, true)).toBe(5n);
      expect(v.getBigUint64(16, true)).toBe(alignment ? 17n : 16n);
      // The first KV starts at byte 24: u64 key length, key, u32 type (8 = string), gguf string.
      expect(v.getBigUint64(24, true)).toBe(20n);
      expect(new TextDecoder().decode(buf.subarray(32, 52))).toBe('general.architecture');
      expect(v.getUint32(52, true)).toBe(8);
      expect(v.getBigUint64(56, true)).toBe(5n);
      expect(new TextDecoder().decode(buf.subarray(64, 69))).toBe('llama');

      const f = readGguf(buf);
      expect(f.alignment).toBe(alignment ?? 32);
      expect(f.dataStart % f.alignment).toBe(0);
      const m = (k: string) => f.metadata.get(k)!;
      expect([m('t.u8'), m('t.i8'), m('t.u16'), m('t.i16'), m('t.u32'), m('t.i32'), m('t.f32'), m('t.bool')].map((x) => [x.type, x.value]))
        .toEqual([[0, 250], [1, -7], [2, 65000], [3, -30000], [4, 4_000_000_000], [5, -2_000_000_000], [6, 0.5], [7, true]]);
      expect([m('t.str'), m('t.u64'), m('t.i64'), m('t.f64')].map((x) => [x.type, x.value])).toEqual([[8, 'héllo ✓'], [10, 2n ** 60n], [11, -(2n ** 50n)], [12, Math.PI]]);
      expect(m('t.arr.str')).toEqual({ type: 9, itemType: 8, value: ['a', '', 'Ġb c'] });
      expect(m('t.arr.i32')).toEqual({ type: 9, itemType: 5, value: [1, -2, 3] });
      expect(m('t.arr.empty')).toEqual({ type: 9, itemType: 6, value: [] });
      // Tensor infos: dims innermost first, ggml type ids, aligned back-to-back offsets.
      expect(f.tensors.map((t) => [t.name, t.ne, t.type])).toEqual([
        ['a.f32', [5, 3], 0], ['b.f16', [7], 1], ['c.bf16', [3, 2], 30], ['d.q8_0', [64, 3], 8], ['e.q4_0', [64, 3], 2],
      ]);
      expect(f.tensors.map((t) => t.bytes)).toEqual([60, 14, 12, 6 * 34, 6 * 18]);
      for (const t of f.tensors) expect(t.offset % f.alignment).toBe(0);
      expect(Array.from(ggufTensorF32(f, 'a.f32'))).toEqual(Array.from(ramp(15, (i) => i - 7)));
      expect(Array.from(ggufTensorF32(f, 'b.f16')).slice(0, 4)).toEqual([1, -2, 0, 65504]);
      expect(Array.from(ggufTensorF32(f, 'c.bf16'))).toEqual([1, -1, 2, 0, 3.140625, 0.5]);
      // Any stray byte is caught: a.f32 has 60 bytes, so bytes 60..63 of the data section are padding.
      const bad = buf.slice();
      bad[f.dataStart + 61] = 1;
      expect(() => readGguf(bad)).toThrow(/padding after a.f32/);
      expect(() => readGguf(buf.subarray(0, buf.length - 1))).toThrow(/GGUF/);
    }
  });

  it('q8_0 and q4_0 blocks hold the bytes of ggml reference quantizers', () => {
    const x = ramp(32, (j) => j - 16); // largest magnitude -16 at j = 0
    const q8 = quantizeQ8_0(x);
    const d8 = new DataView(q8.buffer);
    expect(q8.length).toBe(34);
    expect(d8.getUint16(0, true)).toBe(0x3008); // f16(16/127) = 0.12598 -> 0x3008
    expect(d8.getInt8(2)).toBe(-127); // round(-16 * 127/16)
    expect(d8.getInt8(2 + 16)).toBe(0);
    expect(d8.getInt8(2 + 31)).toBe(119); // round(15 * 127/16) = round(119.06)
    const q4 = quantizeQ4_0(x);
    const d4 = new DataView(q4.buffer);
    expect(q4.length).toBe(18);
    expect(d4.getUint16(0, true)).toBe(0x4000); // d = -16 / -8 = 2
    expect(q4[2]).toBe(0x80); // element 0 -> 0 (low nibble), element 16 -> 8 (high nibble)
    expect(q4[2 + 15]).toBe(0xf8); // element 15 = -1 -> trunc(-0.5 + 8.5) = 8 (low); element 31 = 15 -> 16, clamped to 15 (high)
  });

  it('encodes large tensors in slices between event-loop turns, to the same bytes', async () => {
    const x = ramp(2.5 * 2 ** 20 + 64, (i) => Math.sin(i * 0.013) * (1 + (i % 7)));
    for (const t of ['f16', 'bf16', 'q8_0', 'q4_0'] as const) {
      let turns = 0;
      const timer = setInterval(() => turns++, 0);
      const sliced = await encodeTensorYielding(t, x);
      clearInterval(timer);
      expect(Buffer.compare(Buffer.from(sliced), Buffer.from(encodeTensor(t, x)))).toBe(0);
      expect(turns).toBeGreaterThan(0);
    }
  });

  it('decodes quantized tensors within half a step of the input', async () => {
    const path = join(dir, 'q.gguf');
    await writeGguf(path, image());
    const f = readGguf(new Uint8Array(await readFile(path)));
    const w = ramp(3 * 64, (i) => Math.sin(i * 0.37) * (1 + (i % 5)));
    for (const [name, steps] of [['d.q8_0', 127], ['e.q4_0', 8]] as const) {
      const got = ggufTensorF32(f, name);
      for (let b = 0; b < 6; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(w[b * 32 + j]));
        // Rounding costs d/2 (q8_0: d = amax/127; q4_0: d = amax/8), and the scale stored as f16
        // (relative error 2^-11) adds up to |q|·d·2^-11. q4_0 maps the largest magnitude to -8 exactly,
        // so a value of the other sign near amax lands on +8, clamped to 7: an error of up to d.
        const d = amax / steps;
        const tol = name === 'd.q8_0' ? d * (0.5 + 127 / 2048) : d * (1 + 8 / 2048);
        for (let j = 0; j < 32; j++) expect(Math.abs(got[b * 32 + j] - w[b * 32 + j])).toBeLessThanOrEqual(tol + 1e-7);
      }
    }
  });

  it('refuses shapes that do not fill blocks, duplicate names and mistyped metadata, leaving no file', async () => {
    const bad = (img: GgufImage) => writeGguf(join(dir, 'bad.gguf'), img);
    await expect(bad({ metadata: new Map(), tensors: [{ name: 'x', shape: [2, 33], type: 'q8_0', data: () => new Uint8Array(0) }] })).rejects.toThrow(/multiple of 32/);
    const t = { name: 'x', shape: [4], type: 'f32' as const, data: () => new Uint8Array(16) };
    await expect(bad({ metadata: new Map(), tensors: [t, t] })).rejects.toThrow(/twice/);
    await expect(bad({ metadata: new Map([['k', { type: 'u32', value: 1.5 }]]), tensors: [] })).rejects.toThrow(/integer/);
    await expect(bad({ metadata: new Map(), tensors: [{ ...t, data: () => new Uint8Array(12) }] })).rejects.toThrow(/needs 16 bytes/);
    expect((await readdir(dir)).filter((n) => n.includes('bad'))).toEqual([]);
    expect(() => ggufHead({ metadata: new Map([['general.alignment', kv.u32(24)]]), tensors: [] })).toThrow(/power of two/);
  });

  it('a write that fails mid-file (a full disk) leaves the previous file intact and no temp file', async () => {
    const path = join(dir, 'keep.gguf');
    await writeGguf(path, image());
    const before = await readFile(path);
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const img = image();
    img.tensors[3] = { ...img.tensors[3], data: () => { throw full; } }; // after three tensors have streamed out
    await expect(writeGguf(path, img)).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(Buffer.compare(await readFile(path), before)).toBe(0);
    expect((await readdir(dir)).filter((n) => n.includes('keep.gguf') && n !== 'keep.gguf')).toEqual([]);
  });
});
