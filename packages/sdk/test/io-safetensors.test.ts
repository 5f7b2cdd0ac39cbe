import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bf16ToF32, encodeSafetensors, f16ToF32, f32ToBf16, f32ToF16, LoraError, openWeights, parseSafetensors,
  SafetensorsFile, ShardedSafetensors, writeSafetensors, type RawTensor,
} from '../src/io/index.js';

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'lora-st-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

const sample = (): Record<string, RawTensor> => ({
  'w.f32': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
  'w.bf16': { dtype: 'BF16', shape: [2], data: f32ToBf16(new Float32Array([1.5, -2])) },
  'ids': { dtype: 'I64', shape: [3], data: new BigInt64Array([1n, -2n, 3n]) },
  'mask': { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
  'small': { dtype: 'I8', shape: [1], data: new Int8Array([-7]) },
});

/** Hand-builds a file: 8-byte length, the header JSON as given, then `data`. */
function rawFile(header: unknown, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const codeOf = (fn: () => unknown) => {
  try { fn(); } catch (e) { return (e as LoraError).code; }
  return 'no error';
};

describe('safetensors', () => {
  it('round-trips every dtype through a file, with metadata and an 8-aligned header', async () => {
    const path = join(dir, 'a.safetensors');
    await writeSafetensors(path, sample(), { format: 'pt' });
    const bytes = await readFile(path);
    expect(Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true)) % 8).toBe(0);
    await using f = await SafetensorsFile.open(path);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.keys().sort()).toEqual(Object.keys(sample()).sort());
    expect(f.info('w.f32')).toEqual({ dtype: 'F32', shape: [2, 3] });
    expect(Array.from((await f.read('w.f32')).data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(bf16ToF32((await f.read('w.bf16')).data as Uint16Array))).toEqual([1.5, -2]);
    expect(Array.from((await f.read('ids')).data as BigInt64Array)).toEqual([1n, -2n, 3n]);
    expect(Array.from((await f.read('small')).data)).toEqual([-7]);
    await expect(f.read('nope')).rejects.toMatchObject({ code: 'E_TENSOR_NOT_FOUND' });
    expect((await readdir(dir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('matches the byte layout of the reference writer', () => {
    // safetensors.torch.save_file({"a": torch.zeros(2)}) → header {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} padded to 64.
    const bytes = encodeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float32Array(2) } });
    const json = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    expect(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true)).toBe(56n);
    expect(new TextDecoder().decode(bytes.subarray(8, 64))).toBe(json.padEnd(56, ' '));
    expect(bytes.byteLength).toBe(72);
  });

  it('rejects malformed headers with specific codes', () => {
    const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const d8 = new Uint8Array(8);
    expect(codeOf(() => parseSafetensors(rawFile(ok, d8)))).toBe('no error');
    expect(codeOf(() => parseSafetensors(new Uint8Array(5)))).toBe('E_SAFETENSORS_TRUNCATED');
    expect(codeOf(() => parseSafetensors(rawFile(ok, d8, 10_000n)))).toBe('E_SAFETENSORS_TRUNCATED');
    expect(codeOf(() => parseSafetensors(rawFile(ok, d8.subarray(0, 5))))).toBe('E_SAFETENSORS_TRUNCATED');
    expect(codeOf(() => parseSafetensors(rawFile('{"t": oops}', d8)))).toBe('E_SAFETENSORS_HEADER');
    expect(codeOf(() => parseSafetensors(rawFile({ t: { dtype: 'F8', shape: [2], data_offsets: [0, 8] } }, d8)))).toBe('E_DTYPE');
    expect(codeOf(() => parseSafetensors(rawFile({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, d8)))).toBe('E_SHAPE');
    expect(codeOf(() => parseSafetensors(rawFile({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, d8)))).toBe('E_SHAPE');
    const overlap = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    expect(codeOf(() => parseSafetensors(rawFile(overlap, d8)))).toBe('E_SAFETENSORS_OFFSETS');
    const gap = { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    expect(codeOf(() => parseSafetensors(rawFile(gap, d8)))).toBe('E_SAFETENSORS_OFFSETS');
    const outOfRange = { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } };
    expect(codeOf(() => parseSafetensors(rawFile(outOfRange, d8)))).toBe('E_SAFETENSORS_TRUNCATED');
    const dup = '{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    expect(codeOf(() => parseSafetensors(rawFile(dup, d8)))).toBe('E_DUPLICATE_KEY');
    expect(codeOf(() => parseSafetensors(rawFile({ __metadata__: { n: 1 } }, new Uint8Array(0))))).toBe('E_SAFETENSORS_HEADER');
  });

  it('names the file in errors from a truncated file on disk', async () => {
    const path = join(dir, 'cut.safetensors');
    const full = encodeSafetensors(sample());
    await writeFile(path, full.subarray(0, full.byteLength - 3));
    await expect(SafetensorsFile.open(path)).rejects.toThrow(/cut\.safetensors.*truncated/);
    await expect(SafetensorsFile.open(join(dir, 'missing.safetensors'))).rejects.toMatchObject({ code: 'E_FILE_NOT_FOUND' });
  });

  it('reads a sharded checkpoint through its index, and openWeights finds it', async () => {
    const shardDir = join(dir, 'sharded');
    await (await import('node:fs/promises')).mkdir(shardDir);
    const s = sample();
    await writeSafetensors(join(shardDir, 'model-00001-of-00002.safetensors'), { 'w.f32': s['w.f32'], ids: s.ids });
    await writeSafetensors(join(shardDir, 'model-00002-of-00002.safetensors'), { mask: s.mask });
    const index = {
      metadata: { total_size: 42 },
      weight_map: { 'w.f32': 'model-00001-of-00002.safetensors', ids: 'model-00001-of-00002.safetensors', mask: 'model-00002-of-00002.safetensors' },
    };
    await writeFile(join(shardDir, 'model.safetensors.index.json'), JSON.stringify(index));
    const w = await openWeights(shardDir);
    try {
      expect(w).toBeInstanceOf(ShardedSafetensors);
      expect(w.keys()).toEqual(['w.f32', 'ids', 'mask']);
      expect(Array.from((await w.read('mask')).data)).toEqual([1, 0]);
    } finally {
      await w.close();
    }
    index.weight_map.mask = 'model-00001-of-00002.safetensors';
    await writeFile(join(shardDir, 'model.safetensors.index.json'), JSON.stringify(index));
    await expect(openWeights(shardDir)).rejects.toMatchObject({ code: 'E_SHARD_INDEX' });
    index.weight_map.mask = '../../etc/passwd';
    await writeFile(join(shardDir, 'model.safetensors.index.json'), JSON.stringify(index));
    await expect(openWeights(shardDir)).rejects.toThrow(/not a file name beside the index/);
  });

  it('converts half precision exactly', () => {
    const values = new Float32Array([0, -0, 1, -2.5, 65504, 6.103515625e-5, 5.960464477539063e-8, Infinity, -Infinity]);
    expect(Array.from(f16ToF32(f32ToF16(values)))).toEqual(Array.from(values));
    expect(f32ToF16(new Float32Array([70000]))[0]).toBe(0x7c00);
    expect(Number.isNaN(f16ToF32(f32ToF16(new Float32Array([NaN])))[0])).toBe(true);
    expect(f32ToBf16(new Float32Array([1 + 2 ** -8]))[0]).toBe(0x3f80); // tie rounds to even
    expect(f32ToBf16(new Float32Array([1 + 3 * 2 ** -8]))[0]).toBe(0x3f82);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(new Float32Array([NaN])))[0])).toBe(true);
  });
});
