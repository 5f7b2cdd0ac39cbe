// Mutation fuzzing of every file loader on real fixtures: bit flips, byte overwrites, truncations,
// insertions and (for JSON) hostile values. Every input must load or be refused with a LoraError code;
// anything else (TypeError, RangeError, a hang) is a crash. Deterministic (seeded), ~15 s in all.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadOptConfig } from '../src/config/index.js';
import { isLoraError, SafetensorsFile, ShardedSafetensors, TorchCheckpoint, unpickleTorchStateDict, ZipArchive } from '../src/io/index.js';
import { validateAdapterFolder } from '../src/model/adapter-validate.js';
import { storedZip } from './fixtures/io/stored-zip.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'lora-fuzz-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

/** xorshift32: the same inputs on every run. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s % n;
  };
}

const INTERESTING = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, 0x20, 0x0a, 0x22, 0x7b, 0x7d, 0x5d, 0x2e, 0x28];

/** One mutation of `bytes`: flip, overwrite, interesting byte, 32-bit extreme, truncate, insert, duplicate a span. */
function mutate(bytes: Uint8Array, r: (n: number) => number): Uint8Array {
  const b = Buffer.from(bytes);
  const at = r(Math.max(1, b.length));
  switch (r(7)) {
    case 0: b[at] ^= 1 << r(8); return b;
    case 1: b[at] = r(256); return b;
    case 2: b[at] = INTERESTING[r(INTERESTING.length)]; return b;
    case 3: if (at + 4 <= b.length) b.writeUInt32LE([0xffffffff, 0x7fffffff, 0x80000000, 0, 1 << 30][r(5)], at); return b;
    case 4: return b.subarray(0, at);
    case 5: return Buffer.concat([b.subarray(0, at), Buffer.from([r(256), r(256), r(256)]), b.subarray(at)]);
    default: {
      const len = 1 + r(64);
      return Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]);
    }
  }
}

/** Values a hostile config may hold in place of any number or string. */
const HOSTILE_VALUES: unknown[] = [1e12, -1, 0, 1.5, 1e308, -1e308, 2 ** 53, '12', null, true, [], {}, [1e9], 'x'.repeat(1000), 65537, 4294967296];

function mutateJson(value: unknown, r: (n: number) => number): unknown {
  if (Array.isArray(value)) return value.map((v) => (r(4) === 0 ? mutateJson(v, r) : v));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = r(3) === 0 ? mutateJson(v, r) : v;
    return out;
  }
  return HOSTILE_VALUES[r(HOSTILE_VALUES.length)];
}

interface Tally { inputs: number; accepted: number; refused: Record<string, number>; crashes: string[] }

/** Runs `load`; a LoraError is a refusal, resolving is acceptance, anything else or 10 s is a crash. */
async function attempt(t: Tally, label: string, load: () => Promise<unknown>): Promise<void> {
  t.inputs++;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('timed out after 10 s')), 10_000); });
  try {
    await Promise.race([load(), timeout]);
    t.accepted++;
  } catch (e) {
    if (isLoraError(e)) t.refused[e.code] = (t.refused[e.code] ?? 0) + 1;
    else t.crashes.push(`${label}: ${(e as Error)?.name}: ${(e as Error)?.message ?? String(e)}`);
  } finally {
    clearTimeout(timer);
  }
}

const tally = (): Tally => ({ inputs: 0, accepted: 0, refused: {}, crashes: [] });
const report = (name: string, t: Tally) => `${name}: ${t.inputs} inputs, ${t.accepted} accepted, refused ${JSON.stringify(t.refused)}, ${t.crashes.length} crashes`;

async function readAll(source: { keys(): string[]; read(k: string): Promise<unknown>; close(): Promise<void> }): Promise<void> {
  try {
    for (const k of source.keys()) await source.read(k);
  } finally {
    await source.close();
  }
}

describe('mutation fuzzing of the loaders', () => {
  it('never crashes on mutated data.pkl pickles (restricted unpickler)', async () => {
    const zip = await ZipArchive.open(join(fixtures, 'io', 'tiny_state.bin'));
    const pkl = await zip.read('tiny_state/data.pkl');
    await zip.close();
    const r = rng(1);
    const t = tally();
    for (let i = 0; i < 2000; i++) {
      let input = mutate(pkl, r);
      if (r(3) === 0) input = mutate(input, r);
      await attempt(t, `pickle #${i}`, async () => unpickleTorchStateDict(input, 'fuzz.pkl'));
    }
    console.log(report('pickle', t));
    expect(t.crashes).toEqual([]);
  });

  it('never crashes on mutated pickles inside archives with valid CRCs, reading every tensor they describe', async () => {
    // The CRC shields data.pkl from plain bit flips, so here the mutated pickle is re-packed with a
    // correct CRC beside the original storages: odd shapes, strides, offsets and storage keys reach the reader.
    const zip = await ZipArchive.open(join(fixtures, 'io', 'tiny_state.bin'));
    const members: [string, Uint8Array][] = [];
    for (const name of zip.names()) members.push([name, await zip.read(name)]);
    await zip.close();
    const pkl = members.find(([n]) => n.endsWith('data.pkl'))![1];
    const r = rng(5);
    const t = tally();
    for (let i = 0; i < 500; i++) {
      const input = mutate(pkl, r);
      const p = join(dir, `repacked-${i}.bin`);
      await writeFile(p, storedZip(members.map(([n, d]) => [n, n.endsWith('data.pkl') ? input : d])));
      await attempt(t, `repacked pickle #${i}`, async () => readAll(await TorchCheckpoint.open(p)));
    }
    console.log(report('repacked pickle', t));
    expect(t.crashes).toEqual([]);
  });

  it('never crashes on mutated pytorch_model.bin archives (stored and deflated), reading every tensor', async () => {
    const t = tally();
    const r = rng(2);
    for (const name of ['tiny_state.bin', 'tiny_state.deflate.bin', 'tiny_opt/pytorch_model.bin']) {
      const bytes = await readFile(join(fixtures, 'io', name));
      for (let i = 0; i < 200; i++) {
        const p = join(dir, `fuzz-${i}.bin`);
        await writeFile(p, mutate(bytes, r));
        await attempt(t, `${name} #${i}`, async () => readAll(await TorchCheckpoint.open(p)));
      }
    }
    console.log(report('pytorch_model.bin', t));
    expect(t.crashes).toEqual([]);
    expect(t.refused.E_CHECKSUM ?? 0).toBeGreaterThan(0); // flips in tensor data are caught by the CRC
  });

  it('never crashes on mutated safetensors files, reading every tensor', async () => {
    const t = tally();
    const r = rng(3);
    for (const file of ['opt-tiny-preln/adapter/adapter_model.safetensors', 'opt-tiny-postln/model/model.safetensors']) {
      const bytes = await readFile(join(fixtures, file));
      for (let i = 0; i < 300; i++) {
        const p = join(dir, `fuzz-${i}.safetensors`);
        // Mutations near the start hit the header, which is what a parser can get wrong.
        const m = r(2) === 0 ? mutate(bytes.subarray(0, 2048), r) : null;
        await writeFile(p, m ? Buffer.concat([m, bytes.subarray(2048)]) : mutate(bytes, r));
        await attempt(t, `${file} #${i}`, async () => readAll(await SafetensorsFile.open(p)));
      }
    }
    console.log(report('safetensors', t));
    expect(t.crashes).toEqual([]);
  });

  it('never crashes on mutated config.json, adapter folders and shard indexes', async () => {
    const t = tally();
    const r = rng(4);
    const config = JSON.parse(await readFile(join(fixtures, 'opt-tiny-preln', 'model', 'config.json'), 'utf8')) as unknown;
    const configText = Buffer.from(JSON.stringify(config));
    const m = join(dir, 'model');
    await mkdir(m, { recursive: true });
    for (let i = 0; i < 400; i++) {
      await writeFile(join(m, 'config.json'), i % 2 ? mutate(configText, r) : JSON.stringify(mutateJson(config, r)));
      await attempt(t, `config #${i}`, () => loadOptConfig(m));
    }
    const adapterConfig = JSON.parse(await readFile(join(fixtures, 'opt-tiny-preln', 'adapter', 'adapter_config.json'), 'utf8')) as unknown;
    const weights = await readFile(join(fixtures, 'opt-tiny-preln', 'adapter', 'adapter_model.safetensors'));
    const a = join(dir, 'adapter');
    await mkdir(a, { recursive: true });
    for (let i = 0; i < 200; i++) {
      await writeFile(join(a, 'adapter_config.json'), JSON.stringify(i % 2 ? mutateJson(adapterConfig, r) : adapterConfig));
      await writeFile(join(a, 'adapter_model.safetensors'), i % 2 ? weights : mutate(weights, r));
      await attempt(t, `adapter #${i}`, () => validateAdapterFolder(a));
    }
    const index = Buffer.from(JSON.stringify({ metadata: { total_size: 1 }, weight_map: { 'model.decoder.embed_tokens.weight': 'model.safetensors' } }));
    await writeFile(join(m, 'model.safetensors'), await readFile(join(fixtures, 'opt-tiny-preln', 'model', 'model.safetensors')));
    for (let i = 0; i < 100; i++) {
      await writeFile(join(m, 'model.safetensors.index.json'), mutate(index, r));
      await attempt(t, `index #${i}`, async () => (await ShardedSafetensors.open(join(m, 'model.safetensors.index.json'))).close());
    }
    console.log(report('json files', t));
    expect(t.crashes).toEqual([]);
  });
});
