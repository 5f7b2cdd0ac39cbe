// Hostile PEFT adapters: configs whose r or alpha the weights do not back, and weights that are NaN,
// infinite or large enough to overflow. Each is refused by loadAdapter before anything is allocated
// for it, with a code; the fixture adapter they are made from still loads.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { OptForCausalLM } from '../src/index.js';
import { parseSafetensors, writeSafetensors, type RawTensor } from '../src/io/index.js';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'opt-tiny-preln');
const Q_A = 'base_model.model.model.decoder.layers.0.self_attn.q_proj.lora_A.weight';
const Q_B = 'base_model.model.model.decoder.layers.0.self_attn.q_proj.lora_B.weight';
let dir: string;
let config: Record<string, unknown>;
let tensors: Map<string, RawTensor>;
let model: OptForCausalLM;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lora-hostile-adapter-'));
  config = JSON.parse(await readFile(join(fixture, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  tensors = parseSafetensors(new Uint8Array(await readFile(join(fixture, 'adapter', 'adapter_model.safetensors')))).tensors;
  model = await OptForCausalLM.fromPretrained(join(fixture, 'model'), { device: 'cpu' });
});
afterAll(async () => {
  model?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/** An adapter folder: the fixture's config with `changes`, its tensors with `edit` applied. */
async function adapter(name: string, changes: Record<string, unknown>, edit?: (t: Map<string, RawTensor>) => void): Promise<string> {
  const out = join(dir, name);
  await mkdir(out);
  await writeFile(join(out, 'adapter_config.json'), JSON.stringify({ ...config, ...changes }));
  const copy = new Map([...tensors].map(([k, t]) => [k, { ...t, data: (t.data as Float32Array).slice() }]));
  edit?.(copy);
  await writeSafetensors(join(out, 'adapter_model.safetensors'), copy, { format: 'pt' });
  return out;
}

const fill = (key: string, value: number) => (t: Map<string, RawTensor>) => (t.get(key)!.data as Float32Array).fill(value);

describe('hostile adapters', () => {
  it('loads the fixture adapter unchanged (the control)', async () => {
    const ok = await adapter('ok', {});
    await model.loadAdapter(ok);
    expect(model.lora?.r).toBe(4);
  });

  it('refuses r: 65536 against rank-4 tensors from the header, before allocating (was 10.3 GB)', async () => {
    const rss = process.memoryUsage().rss;
    const t0 = performance.now();
    const p = await adapter('r65536', { r: 65536 });
    await expect(model.loadAdapter(p)).rejects.toMatchObject({ code: 'E_WEIGHTS_MISMATCH', field: 'r', message: expect.stringMatching(/says r = 65536.*rank 4/) });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 1024 * 1024);
  });

  it('refuses a rank above min(in, out), even when config and tensors agree', async () => {
    const p = await adapter('fullrank', { r: 40 }, (t) => {
      for (const [k, v] of t) {
        const isA = k.includes('lora_A');
        const shape = isA ? [40, v.shape[1]] : [v.shape[0], 40];
        t.set(k, { dtype: 'F32', shape, data: new Float32Array(shape[0] * shape[1]) });
      }
    });
    await expect(model.loadAdapter(p)).rejects.toMatchObject({ code: 'E_WEIGHTS_MISMATCH', message: expect.stringMatching(/rank 40 above min\(in 32, out 32\)/) });
  });

  it('refuses all-NaN, infinite and 1e30 weights, and a delta that would overflow', async () => {
    for (const [name, key, value] of [['nan', Q_A, Number.NaN], ['inf', Q_B, -Infinity], ['huge', Q_B, 1e30]] as const) {
      const p = await adapter(name, {}, fill(key, value));
      await expect(model.loadAdapter(p), name).rejects.toMatchObject({ code: 'E_NON_FINITE', message: expect.stringContaining(key) });
    }
    // Each entry is fine on its own (1000 < 65504), but 2 (scale) x 4 (r) x 1000 x 1000 is not.
    const both = await adapter('product', {}, (t) => { fill(Q_A, 1000)(t); fill(Q_B, 1000)(t); });
    await expect(model.loadAdapter(both)).rejects.toMatchObject({ code: 'E_NON_FINITE', message: expect.stringMatching(/weight delta may reach 8\.00e\+6/) });
  });

  it('refuses lora_alpha 1e308 (scale overflows f32) and non-numeric or non-finite settings', async () => {
    await expect(model.loadAdapter(await adapter('alpha', { lora_alpha: 1e308 }))).rejects.toMatchObject({ code: 'E_NON_FINITE', field: 'lora_alpha' });
    await expect(model.loadAdapter(await adapter('alpha-str', { lora_alpha: '8' }))).rejects.toMatchObject({ code: 'E_CONFIG', field: 'lora_alpha' });
    await expect(model.loadAdapter(await adapter('r-frac', { r: 4.5 }))).rejects.toMatchObject({ code: 'E_CONFIG', field: 'r' });
    await expect(model.loadAdapter(await adapter('dropout', { lora_dropout: 2 }))).rejects.toMatchObject({ code: 'E_CONFIG', field: 'lora_dropout' });
  });

  it('refuses a target the weights do not hold, and a lora_A without its lora_B', async () => {
    await expect(model.loadAdapter(await adapter('fc1', { target_modules: ['q_proj', 'k_proj', 'v_proj', 'fc1'] })))
      .rejects.toMatchObject({ code: 'E_WEIGHTS_MISMATCH', message: expect.stringMatching(/targets fc1/) });
    await expect(model.loadAdapter(await adapter('half', {}, (t) => t.delete(Q_B))))
      .rejects.toMatchObject({ code: 'E_WEIGHTS_MISMATCH', message: expect.stringMatching(/q_proj has lora_A but no lora_B/) });
  });

  it('keeps the adapter it had when a hostile one is refused', async () => {
    const before = model.lora;
    await expect(model.loadAdapter(await adapter('nan2', {}, fill(Q_A, Number.NaN)))).rejects.toMatchObject({ code: 'E_NON_FINITE' });
    expect(model.lora).toBe(before);
  });

  it('refuses an adapter_config.json that is a FIFO or a link out of the folder', async () => {
    const p = await adapter('fifo', {});
    await rm(join(p, 'adapter_config.json'));
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [join(p, 'adapter_config.json')]);
    await expect(model.loadAdapter(p)).rejects.toMatchObject({ code: 'E_FILE_TYPE', message: expect.stringMatching(/FIFO/) });
    const q = await adapter('link', {});
    await copyFile(join(q, 'adapter_config.json'), join(dir, 'outside.json'));
    await rm(join(q, 'adapter_config.json'));
    const { symlink } = await import('node:fs/promises');
    await symlink(join(dir, 'outside.json'), join(q, 'adapter_config.json'));
    await expect(model.loadAdapter(q)).rejects.toMatchObject({ code: 'E_FILE_TYPE', message: expect.stringMatching(/symlink to a file outside its folder/) });
  });
});
