import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openWeights, SafetensorsFile, toF32, TorchCheckpoint, writeSafetensors, ZipArchive, type RawTensor } from '../src/io/index.js';
import { storedZip } from './fixtures/io/stored-zip.js';
import { openOptCheckpoint } from '../src/config/index.js';

const fixtures = fileURLToPath(new URL('./fixtures/io/', import.meta.url));
type Expected = Record<string, { dtype: string; shape: number[]; values: number[] }>;
let expected: Expected;
let dir: string;

beforeAll(async () => {
  expected = JSON.parse(await readFile(join(fixtures, 'tiny_state.json'), 'utf8')) as Expected;
  dir = await mkdtemp(join(tmpdir(), 'lora-bin-'));
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

const values = (t: RawTensor) => (t.dtype === 'I64' ? Array.from(t.data as BigInt64Array, Number) : Array.from(toF32(t.dtype, t.data)));

describe('pytorch_model.bin', () => {
  for (const file of ['tiny_state.bin', 'tiny_state.deflate.bin']) {
    it(`reads every tensor of a real torch.save file (${file})`, async () => {
      await using ckpt = await TorchCheckpoint.open(join(fixtures, file));
      expect(ckpt.keys()).toEqual(Object.keys(expected));
      for (const [name, want] of Object.entries(expected)) {
        const t = await ckpt.read(name);
        expect(t.dtype, name).toBe(want.dtype);
        expect(t.shape, name).toEqual(want.shape);
        expect(values(t), name).toEqual(want.values.map((v) => (want.dtype === 'BOOL' ? Number(v) : v)));
      }
    });
  }

  it('makes non-contiguous views and offset slices contiguous, and reports shared storages', async () => {
    await using ckpt = await TorchCheckpoint.open(join(fixtures, 'tiny_state.bin'));
    const t = await ckpt.read('transposed');
    expect(t.shape).toEqual([4, 3]);
    expect(Array.from(t.data as Float32Array)).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    expect(Array.from((await ckpt.read('sliced')).data as Float32Array)).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
    expect(ckpt.storageKey('transposed')).toBe(ckpt.storageKey('sliced'));
    expect(ckpt.storageKey('lm_head.weight')).toBe(ckpt.storageKey('model.decoder.embed_tokens.weight'));
    expect((await ckpt.read('scalar')).shape).toEqual([]);
  });

  it('is what openWeights picks in a folder with only pytorch_model.bin', async () => {
    const model = join(dir, 'model');
    await (await import('node:fs/promises')).mkdir(model);
    await copyFile(join(fixtures, 'tiny_state.bin'), join(model, 'pytorch_model.bin'));
    const w = await openWeights(model);
    try {
      expect(w).toBeInstanceOf(TorchCheckpoint);
      expect(w.info('f16')).toEqual({ dtype: 'F16', shape: [4] });
    } finally {
      await w.close();
    }
  });

  it('refuses the legacy non-zip format with a clear error', async () => {
    await expect(TorchCheckpoint.open(join(fixtures, 'tiny_state.legacy.bin'))).rejects.toMatchObject({
      code: 'E_TORCH_FORMAT',
      message: expect.stringMatching(/legacy/),
    });
  });

  it('refuses truncated and corrupted archives', async () => {
    const bytes = await readFile(join(fixtures, 'tiny_state.bin'));
    for (const cut of [10, 1000, bytes.byteLength - 30]) {
      const p = join(dir, `cut${cut}.bin`);
      await writeFile(p, bytes.subarray(0, cut));
      await expect(TorchCheckpoint.open(p), `cut at ${cut}`).rejects.toMatchObject({ code: 'E_ZIP' });
    }
    // Flip one byte inside a storage: the CRC check of the member catches it on read.
    const zip = await ZipArchive.open(join(fixtures, 'tiny_state.bin'));
    const data0 = zip.entry('tiny_state/data/0');
    await zip.close();
    const corrupt = Buffer.from(bytes);
    const lh = data0.localHeaderOffset;
    const start = lh + 30 + corrupt.readUInt16LE(lh + 26) + corrupt.readUInt16LE(lh + 28);
    corrupt[start + 1] ^= 0xff;
    const p = join(dir, 'corrupt.bin');
    await writeFile(p, corrupt);
    const archive = await ZipArchive.open(p);
    await expect(archive.read('tiny_state/data/0')).rejects.toThrow(/CRC-32/);
    await archive.close();
  });

  it('reads zip64 archives (sizes and offsets in the zip64 extra field and end record)', async () => {
    const plain = await ZipArchive.open(join(fixtures, 'tiny_state.bin'));
    const members: [string, Uint8Array][] = [];
    for (const name of plain.names()) members.push([name, await plain.read(name)]);
    await plain.close();
    const p = join(dir, 'zip64.bin');
    await writeFile(p, storedZip(members, { zip64: true }));
    await using ckpt = await TorchCheckpoint.open(p);
    expect(Array.from((await ckpt.read('transposed')).data as Float32Array)).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    expect(Array.from((await ckpt.read('i64_transposed')).data as BigInt64Array)).toEqual([0n, 3n, 1n, 4n, 2n, 5n]);
  });

  it('converts a checkpoint to safetensors losslessly', async () => {
    await using ckpt = await TorchCheckpoint.open(join(fixtures, 'tiny_state.bin'));
    const tensors = new Map<string, RawTensor>();
    for (const name of ckpt.keys()) tensors.set(name, await ckpt.read(name));
    const out = join(dir, 'converted.safetensors');
    await writeSafetensors(out, tensors, { format: 'pt' });
    await using st = await SafetensorsFile.open(out);
    for (const [name, t] of tensors) {
      const back = await st.read(name);
      expect(back.dtype, name).toBe(t.dtype);
      expect(back.shape, name).toEqual(t.shape);
      expect(Buffer.from(back.data.buffer, back.data.byteOffset, back.data.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)), name).toBe(true);
    }
  });

  it('opens a torch-saved OPT (post-LN layout, model. prefix, tied lm_head) and checks it against config.json', async () => {
    await using ckpt = await openOptCheckpoint(join(fixtures, 'tiny_opt'));
    expect(ckpt.weights).toBeInstanceOf(TorchCheckpoint);
    expect(ckpt.config).toMatchObject({ hiddenSize: 8, wordEmbedProjDim: 4, doLayerNormBefore: false });
    expect(ckpt.report).toMatchObject({ prefix: 'model.', lmHeadKey: 'lm_head.weight', problems: [] });
    const tm = ckpt.weights as TorchCheckpoint;
    expect(tm.storageKey('lm_head.weight')).toBe(tm.storageKey('model.decoder.embed_tokens.weight'));
    expect((await ckpt.read('decoder.project_in.weight')).shape).toEqual([8, 4]);
    expect((await ckpt.read('lm_head.weight')).data).toEqual((await ckpt.read('decoder.embed_tokens.weight')).data);
  });

  it('refuses encrypted members and compression methods it cannot read, naming them', async () => {
    const zip = Buffer.from(storedZip([['archive/data.pkl', new Uint8Array([0x80, 0x02, 0x7d, 0x2e])]]));
    const central = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    const bzip2 = Buffer.from(zip);
    bzip2.writeUInt16LE(12, central + 10);
    await writeFile(join(dir, 'bzip2.bin'), bzip2);
    await expect(ZipArchive.open(join(dir, 'bzip2.bin'))).rejects.toThrow(/"archive\/data\.pkl" uses compression method 12/);
    const encrypted = Buffer.from(zip);
    encrypted.writeUInt16LE(1, central + 8);
    await writeFile(join(dir, 'encrypted.bin'), encrypted);
    await expect(ZipArchive.open(join(dir, 'encrypted.bin'))).rejects.toThrow(/"archive\/data\.pkl" is encrypted/);
  });
});
