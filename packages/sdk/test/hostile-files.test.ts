// Hostile model folders: config integers sized to exhaust the loader, symlinks leading out of the
// folder, FIFOs and devices where files belong, and files whose text must not leak into messages.
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CONFIG_INT_LIMITS } from '../src/config/bounds.js';
import { loadOptConfig, openOptCheckpoint, parseOptConfig } from '../src/config/index.js';
import { openWeights, SafetensorsFile, ShardedSafetensors } from '../src/io/index.js';
import { AutoModelForCausalLM, OptForCausalLM, OptTokenizer } from '../src/index.js';

const tiny = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'opt-tiny-preln', 'model');
const SECRET = 'root:x:0:0:SECRET-TEXT-OF-ANOTHER-FILE';
let dir: string;
let n = 0;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'lora-hostile-files-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

/** A copy of the tiny model folder (config.json + model.safetensors). */
async function modelDir(): Promise<string> {
  const out = join(dir, `model${n++}`);
  await mkdir(out);
  for (const f of ['config.json', 'model.safetensors']) await copyFile(join(tiny, f), join(out, f));
  return out;
}

async function secretFile(): Promise<string> {
  const p = join(dir, `secret${n++}.txt`);
  await writeFile(p, `${SECRET}\n`);
  return p;
}

describe('config integers', () => {
  it('refuses num_hidden_layers: 1e12 at once with a coded error naming the field (was 51 s, 2.85 GB, RangeError)', () => {
    const t0 = performance.now();
    expect(() => parseOptConfig({ model_type: 'opt', num_hidden_layers: 1e12 })).toThrow(expect.objectContaining({ code: 'E_CONFIG', field: 'num_hidden_layers' }));
    expect(performance.now() - t0).toBeLessThan(100);
  });

  it('bounds every size field, and still accepts the largest real values', () => {
    for (const [field, max] of Object.entries(CONFIG_INT_LIMITS)) {
      expect(() => parseOptConfig({ model_type: 'opt', [field]: max + 1 }), field).toThrow(expect.objectContaining({ code: 'E_CONFIG', field }));
    }
    // opt-66b: 64 layers, hidden 9216, ffn 36864, 72 heads; the vocabulary of 256k models; 1 M positions.
    const big = parseOptConfig({ model_type: 'opt', num_hidden_layers: 64, hidden_size: 9216, ffn_dim: 36864, num_attention_heads: 72, vocab_size: 256000, max_position_embeddings: 1 << 20 });
    expect(big).toMatchObject({ numHiddenLayers: 64, headDim: 128 });
  });
});

describe('model folder files', () => {
  it('refuses a FIFO config.json instead of hanging on it', async () => {
    const m = await modelDir();
    await rm(join(m, 'config.json'));
    execFileSync('mkfifo', [join(m, 'config.json')]);
    await expect(loadOptConfig(m)).rejects.toMatchObject({ code: 'E_FILE_TYPE', message: expect.stringMatching(/FIFO/) });
    await expect(AutoModelForCausalLM.fromPretrained(m, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_FILE_TYPE' });
    await expect(OptForCausalLM.fromPretrained(m, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_FILE_TYPE' });
  });

  it('refuses FIFO and outside-linked tokenizer files', async () => {
    const t = join(dir, `tok${n++}`);
    await mkdir(t);
    execFileSync('mkfifo', [join(t, 'tokenizer.json')]);
    await expect(OptTokenizer.fromPretrained(t)).rejects.toMatchObject({ code: 'E_FILE_TYPE', message: expect.stringMatching(/FIFO/) });
    await rm(join(t, 'tokenizer.json'));
    await symlink(await secretFile(), join(t, 'tokenizer.json'));
    const err = await OptTokenizer.fromPretrained(t).then(() => undefined, (e: Error) => e);
    expect(err).toMatchObject({ code: 'E_FILE_TYPE' });
    expect(err!.message).not.toContain('SECRET');
  });

  it('refuses devices and folders where a weights file belongs', async () => {
    await expect(SafetensorsFile.open('/dev/zero')).rejects.toMatchObject({ code: 'E_FILE_TYPE', message: expect.stringMatching(/a device/) });
    await expect(SafetensorsFile.open(dir)).rejects.toMatchObject({ code: 'E_FILE_TYPE', message: expect.stringMatching(/a folder/) });
  });

  it('refuses symlinks out of the folder, without echoing what the target holds', async () => {
    const m = await modelDir();
    await rm(join(m, 'config.json'));
    await symlink(await secretFile(), join(m, 'config.json'));
    for (const load of [() => loadOptConfig(m), () => AutoModelForCausalLM.fromPretrained(m, { device: 'cpu' })]) {
      const err = await load().then(() => undefined, (e: Error) => e);
      expect(err).toMatchObject({ code: 'E_FILE_TYPE', message: expect.stringMatching(/symlink to a file outside its folder/) });
      expect(err!.message).not.toContain('SECRET');
    }
    const w = await modelDir();
    await rm(join(w, 'model.safetensors'));
    await symlink(join(tiny, 'model.safetensors'), join(w, 'model.safetensors'));
    await expect(openWeights(w)).rejects.toMatchObject({ code: 'E_FILE_TYPE' });
  });

  it('follows symlinks that stay inside the folder, and a Hugging Face cache snapshot into its blobs', async () => {
    const m = await modelDir();
    await copyFile(join(m, 'config.json'), join(m, 'config.real.json'));
    await rm(join(m, 'config.json'));
    await symlink('config.real.json', join(m, 'config.json'));
    await (await openOptCheckpoint(m)).close();
    // models--org--name/{blobs/<hash>, snapshots/<rev>/<file> -> ../../blobs/<hash>}, as huggingface_hub lays it out.
    const repo = join(dir, 'hub', 'models--org--tiny');
    const snapshot = join(repo, 'snapshots', 'a'.repeat(40));
    await mkdir(join(repo, 'blobs'), { recursive: true });
    await mkdir(snapshot, { recursive: true });
    for (const [i, f] of ['config.json', 'model.safetensors'].entries()) {
      await copyFile(join(tiny, f), join(repo, 'blobs', `hash${i}`));
      await symlink(join('..', '..', 'blobs', `hash${i}`), join(snapshot, f));
    }
    await using ckpt = await openOptCheckpoint(snapshot);
    expect(ckpt.config.hiddenSize).toBe(32);
  });

  it('never quotes a file in a JSON syntax error (config.json, shard index, safetensors header)', async () => {
    const m = await modelDir();
    await writeFile(join(m, 'config.json'), SECRET);
    const errs: Error[] = [];
    errs.push(await loadOptConfig(m).catch((e: Error) => e) as Error);
    await writeFile(join(m, 'model.safetensors.index.json'), `{"weight_map": ${SECRET}}`);
    errs.push(await ShardedSafetensors.open(join(m, 'model.safetensors.index.json')).catch((e: Error) => e) as Error);
    const header = Buffer.from(`{"a": ${SECRET}}`);
    const st = Buffer.alloc(8 + header.length);
    st.writeBigUInt64LE(BigInt(header.length));
    header.copy(st, 8);
    await writeFile(join(m, 'bad.safetensors'), st);
    errs.push(await SafetensorsFile.open(join(m, 'bad.safetensors')).catch((e: Error) => e) as Error);
    expect(errs.map((e) => (e as { code?: string }).code)).toEqual(['E_CONFIG', 'E_SHARD_INDEX', 'E_SAFETENSORS_HEADER']);
    for (const e of errs) {
      expect(e.message).toMatch(/not valid JSON/);
      expect(e.message).not.toMatch(/SECRET|root:x/);
    }
  });

  it('refuses a config.json too big to be one, before reading it', async () => {
    const m = await modelDir();
    const real = await readFile(join(m, 'config.json'), 'utf8');
    await writeFile(join(m, 'config.json'), real.replace('{', `{"pad": "${'x'.repeat(17 * 1024 * 1024)}",`));
    await expect(loadOptConfig(m)).rejects.toMatchObject({ code: 'E_TOO_LARGE' });
  });
});
