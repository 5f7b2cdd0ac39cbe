// Hostile pytorch_model.bin archives: zip bombs, pickles that build too much, bit flips. Each case is
// a small file that used to cost gigabytes, a crash or a silent wrong load; now each is refused with
// a code, within a memory bound checked at the end.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoraError, TorchCheckpoint, ZipArchive } from '../src/io/index.js';
import { deflatedRepeat, hostileZip, repeatCrc } from './fixtures/io/hostile-zip.js';

const fixtures = fileURLToPath(new URL('./fixtures/io/', import.meta.url));
let dir: string;
let rssBefore: number;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lora-hostile-zip-'));
  // The higher of the current RSS and the peak so far: if this worker ran a heavier file before, the
  // check below can only pass vacuously, never fail for someone else's peak.
  rssBefore = Math.max(process.memoryUsage().rss, process.resourceUsage().maxRSS * 1024);
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

const MiB = 1024 * 1024;
const PROTO2 = [0x80, 0x02];

async function refusal(name: string, bytes: Uint8Array): Promise<{ err: LoraError; ms: number; fileBytes: number }> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  const t0 = performance.now();
  try {
    await (await TorchCheckpoint.open(path)).close();
  } catch (e) {
    return { err: e as LoraError, ms: performance.now() - t0, fileBytes: bytes.byteLength };
  }
  throw new Error(`${name} was accepted`);
}

/** data.pkl of PROTO 2 and then one opcode `mib` MiB times, deflated without ever holding it whole. */
const repeatedOpcode = (op: number, mib: number) => ({
  name: 'archive/data.pkl',
  deflated: deflatedRepeat(mib, op, new Uint8Array(PROTO2)),
  declaredSize: mib * MiB + 2,
  crc: repeatCrc(mib, op, new Uint8Array(PROTO2)),
});

describe('zip bombs and pickle budgets', () => {
  it('refuses a 4 MB archive whose data.pkl inflates to 4 GB before inflating anything', async () => {
    // The reproduction: 12.6 GB RSS and 44 s before. The directory's honest size is refused.
    const bomb = deflatedRepeat(4000);
    const { err, ms, fileBytes } = await refusal('bomb.bin', hostileZip([{ name: 'archive/data.pkl', deflated: bomb, declaredSize: 4000 * MiB, crc: 0 }]));
    expect(fileBytes).toBeGreaterThan(3.9e6);
    expect(err.code).toBe('E_TOO_LARGE');
    expect(ms).toBeLessThan(2000);
  });

  it('stops inflating a member that lies about its size at the declared size', async () => {
    const bomb = deflatedRepeat(4000);
    const { err, ms } = await refusal('liar.bin', hostileZip([{ name: 'archive/data.pkl', deflated: bomb, declaredSize: 1000, crc: 0 }]));
    expect(err).toMatchObject({ code: 'E_ZIP', message: expect.stringMatching(/inflates past the 1000 bytes/) });
    expect(ms).toBeLessThan(2000);
  });

  it('refuses a directory that claims more than deflate can produce from the compressed bytes', async () => {
    const { err } = await refusal('ratio.bin', hostileZip([{ name: 'archive/data.pkl', deflated: deflatedRepeat(1), declaredSize: 100 * MiB }]));
    expect(err).toMatchObject({ code: 'E_ZIP', message: expect.stringMatching(/more than deflate can produce/) });
  });

  it('refuses a data.pkl over 32 MiB by its declared size', async () => {
    // Padding makes the archive big enough that the whole-archive ratio allows 33 MiB, so the pickle cap is what refuses.
    const padding = new Uint8Array(2 * MiB).map((_, i) => (i * 2654435761) >>> 24);
    const { err } = await refusal('big-pickle.bin', hostileZip([
      repeatedOpcode(0x4e, 33),
      { name: 'archive/padding', data: padding },
    ]));
    expect(err).toMatchObject({ code: 'E_TOO_LARGE', message: expect.stringMatching(/data\.pkl" declares \d+ bytes; at most 33554432/) });
  });

  it('refuses pickles that would build millions of objects, push a huge stack or fill the memo', async () => {
    // 2 MiB of EMPTY_DICT ("}"), NONE ("N"), EMPTY_TUPLE (")"): 2 million objects from ~2 kB files.
    for (const [name, op] of [['dicts', 0x7d], ['nones', 0x4e], ['tuples', 0x29]] as const) {
      const { err } = await refusal(`${name}.bin`, hostileZip([repeatedOpcode(op, 2)]));
      expect(err, name).toMatchObject({ code: 'E_TOO_LARGE', message: expect.stringMatching(/stack deeper than 100000/) });
    }
    // EMPTY_LIST, then EMPTY_DICT APPEND 1 M times: each dict kept, none on the stack.
    const appended = Buffer.alloc(3 + 2_000_000 + 1).fill(Buffer.from([0x7d, 0x61]), 3);
    appended.set([...PROTO2, 0x5d], 0);
    appended[appended.length - 1] = 0x2e;
    const kept = await refusal('appended.bin', hostileZip([{ name: 'archive/data.pkl', data: appended, deflate: true }]));
    expect(kept.err).toMatchObject({ code: 'E_TOO_LARGE', message: expect.stringMatching(/builds more than 1000000 objects/) });
    // LONG_BINPUT with 1.1 M distinct indices: a memo of millions of entries.
    const memo = Buffer.alloc(2 + 1 + 1_100_000 * 5 + 1);
    memo.set([...PROTO2, 0x7d], 0);
    for (let i = 0; i < 1_100_000; i++) {
      memo[3 + i * 5] = 0x72;
      memo.writeUInt32LE(i, 4 + i * 5);
    }
    memo[memo.length - 1] = 0x2e;
    const { err } = await refusal('memo.bin', hostileZip([{ name: 'archive/data.pkl', data: memo, deflate: true }]));
    expect(err).toMatchObject({ code: 'E_TOO_LARGE', message: expect.stringMatching(/builds more than 1000000 objects/) });
  });

  it('answers long APPENDS batches and a 16 MB integer with coded errors, not RangeError or a quadratic loop', async () => {
    // push(...items) threw RangeError (call stack) past ~120,000 items; now a batch is appended in a
    // loop, and a batch deeper than the stack bound is refused.
    for (const [n, code] of [[90_000, 'E_PICKLE'], [200_000, 'E_TOO_LARGE']] as const) {
      const items = Buffer.alloc(n * 2).fill(Buffer.from([0x4b, 0x01])); // BININT1 1
      const appends = Buffer.concat([Buffer.from([...PROTO2, 0x5d, 0x28]), items, Buffer.from([0x65, 0x2e])]);
      const a = await refusal(`appends-${n}.bin`, hostileZip([{ name: 'archive/data.pkl', data: appends, deflate: true }]));
      expect(a.err.code, `${n} items`).toBe(code); // E_PICKLE: a list at the top is not a state dict
    }
    const long4 = Buffer.alloc(2 + 5 + 16 * MiB + 1);
    long4.set([...PROTO2, 0x8b], 0);
    long4.writeInt32LE(16 * MiB, 3);
    const b = await refusal('long4.bin', hostileZip([{ name: 'archive/data.pkl', data: long4, deflate: true }]));
    expect(b.err).toMatchObject({ code: 'E_PICKLE', message: expect.stringMatching(/16777216-byte integer/) });
    expect(b.ms).toBeLessThan(3000);
  });

  it('charges a call for the lists it walks: one memoized 50,000-pair list passed to OrderedDict over and over', async () => {
    // Each REDUCE used to cost the same however long its arguments: 100,000 calls here walk 5e9 pairs.
    const op = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
    const pairs: Buffer[] = [];
    for (let batch = 0; batch < 50; batch++) pairs.push(op('('), Buffer.alloc(1000 * 5).fill(op('K', [1], 'K', [2], '\x86')), op('e'));
    const pkl = op(
      PROTO2, 'ccollections\nOrderedDict\n', 'q', [0], '0', // the global, memo 0
      ']', ...pairs.map((b) => [...b]), 'q', [1], '0', // a list of 50,000 (1, 2) pairs, memo 1
      ']', // the results
      Buffer.alloc(100_000 * 6).fill(op('h', [0], 'h', [1], '\x85', 'R')).toString('latin1'), // ... OrderedDict(pairs) x 100,000
      '.',
    );
    const t0 = performance.now();
    const { err } = await refusal('walks.bin', hostileZip([{ name: 'archive/data.pkl', data: pkl, deflate: true }]));
    expect(err).toMatchObject({ code: 'E_TOO_LARGE', message: expect.stringMatching(/builds more than 1000000 objects/) });
    // Refused in the calls (after the ~250 kB list), after some dozens of them, not a million.
    const at = Number(/at byte (\d+)/.exec(err.message)![1]);
    expect(at).toBeGreaterThan(250_100);
    expect(at).toBeLessThan(250_100 + 6 * 100);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('refuses an expanded (stride 0) view that would turn 4 stored bytes into 1.6 GB', async () => {
    const op = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => Buffer.from(typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
    const str = (v: string) => op('X', [v.length, 0, 0, 0], v);
    const m20000 = ['M', [0x20, 0x4e]] as const; // BININT2 20000
    const pkl = op(
      PROTO2, '}', str('w'), 'ctorch._utils\n_rebuild_tensor_v2\n', '(',
      '(', str('storage'), 'ctorch\nFloatStorage\n', str('0'), str('cpu'), 'K', [1], 't', 'Q',
      'K', [0], ...m20000, ...m20000, '\x86', 'K', [0], 'K', [0], '\x86', '\x89', '}', 't', 'R', 's', '.',
    );
    const p = join(dir, 'expanded.bin');
    await writeFile(p, hostileZip([{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/data/0', data: new Uint8Array(4) }]));
    await using ckpt = await TorchCheckpoint.open(p);
    expect(ckpt.info('w').shape).toEqual([20000, 20000]);
    await expect(ckpt.read('w')).rejects.toMatchObject({ code: 'E_TOO_LARGE', message: expect.stringMatching(/expands a 1-element storage to 400000000 elements/) });
  });

  it('stays within 256 MB of extra memory through every case above', () => {
    // Goal from the issue: at most 10x the file or 256 MB, whichever is larger (the files are <= 4 MB).
    const peak = process.resourceUsage().maxRSS * 1024;
    expect(peak - rssBefore).toBeLessThan(256 * MiB);
  });
});

describe('checksums of tensor data', () => {
  it('refuses a bit flip in a stored tensor, read whole or through a view', async () => {
    const bytes = Buffer.from(await readFile(join(fixtures, 'tiny_state.bin')));
    const zip = await ZipArchive.open(join(fixtures, 'tiny_state.bin'));
    const data7 = zip.entry('tiny_state/data/7'); // storage of "transposed" and "sliced" (3x4 f32)
    const data0 = zip.entry('tiny_state/data/0'); // storage of the embedding (read whole)
    await zip.close();
    const dataStart = (e: { localHeaderOffset: number }) => e.localHeaderOffset + 30 + bytes.readUInt16LE(e.localHeaderOffset + 26) + bytes.readUInt16LE(e.localHeaderOffset + 28);
    const flipped = Buffer.from(bytes);
    flipped[dataStart(data7) + 45] ^= 0x01; // one bit of the last element, outside "sliced"'s first row
    flipped[dataStart(data0) + 3] ^= 0x40;
    const p = join(dir, 'flipped.bin');
    await writeFile(p, flipped);
    await using ckpt = await TorchCheckpoint.open(p);
    await expect(ckpt.read('sliced')).rejects.toMatchObject({ code: 'E_CHECKSUM' });
    await expect(ckpt.read('transposed')).rejects.toMatchObject({ code: 'E_CHECKSUM' });
    await expect(ckpt.read('model.decoder.embed_tokens.weight')).rejects.toMatchObject({ code: 'E_CHECKSUM' });
    expect((await ckpt.read('f32')).shape).toEqual([2, 3]); // untouched storages still read
  });

  it('refuses a deflated member whose CRC does not match what it inflates to', async () => {
    const p = join(dir, 'crc.zip');
    await writeFile(p, hostileZip([{ name: 'a', data: new Uint8Array(1000).fill(7), deflate: true, crc: 12345 }]));
    const zip = await ZipArchive.open(p);
    await expect(zip.read('a')).rejects.toMatchObject({ code: 'E_CHECKSUM' });
    await expect(zip.readRange('a', 10, 20)).rejects.toMatchObject({ code: 'E_CHECKSUM' });
    await zip.close();
  });
});
