import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { repoFolderName, resolveDatasetDir, resolveModelDir, TOKENIZER_FILES, type HubProgressEvent } from '../src/hub/index.js';

// Nothing here may reach the network: every call gets a fetch that fails like an unreachable host.
const unreachable = vi.fn(async () => {
  throw new TypeError('fetch failed', { cause: Object.assign(new Error('getaddrinfo ENOTFOUND huggingface.co'), { code: 'ENOTFOUND' }) });
}) as unknown as typeof fetch;

const SHA = 'a'.repeat(40);
let cache: string;

/** Lays out a repo in the HF cache the way huggingface_hub does: blobs, a snapshot of symlinks, a ref. */
async function cacheRepo(repo: string, type: 'model' | 'dataset', files: Record<string, string>, ref = 'main') {
  const storage = join(cache, repoFolderName(repo, type));
  await mkdir(join(storage, 'blobs'), { recursive: true });
  await mkdir(join(storage, 'snapshots', SHA), { recursive: true });
  await mkdir(join(storage, 'refs'), { recursive: true });
  await writeFile(join(storage, 'refs', ref), SHA);
  for (const [i, [name, content]] of Object.entries(files).entries()) {
    await writeFile(join(storage, 'blobs', `blob${i}`), content);
    await symlink(join('..', '..', 'blobs', `blob${i}`), join(storage, 'snapshots', SHA, name));
  }
  return join(storage, 'snapshots', SHA);
}

beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), 'lora-hub-'));
  await cacheRepo('facebook/opt-tiny', 'model', { 'config.json': '{"model_type":"opt"}', 'model.safetensors': 'x', 'vocab.json': '{}', 'merges.txt': '' });
  await cacheRepo('facebook/opt-noweights', 'model', { 'config.json': '{}' });
  await cacheRepo('sahil/codealpaca', 'dataset', { 'data.json': '[]' });
});
afterAll(async () => { await rm(cache, { recursive: true, force: true }); });
afterEach(() => { vi.unstubAllEnvs(); });

describe('resolveModelDir', () => {
  it('uses a local folder as it is', async () => {
    expect(await resolveModelDir(cache, { fetch: unreachable })).toBe(cache);
    await expect(resolveModelDir('./no/such/folder', { fetch: unreachable })).rejects.toMatchObject({ code: 'E_FILE_NOT_FOUND' });
  });

  it('answers from a complete cached snapshot without the network', async () => {
    const events: HubProgressEvent[] = [];
    const dir = await resolveModelDir('facebook/opt-tiny', { cacheDir: cache, fetch: unreachable, onProgress: (e) => events.push(e) });
    expect(dir).toBe(join(cache, 'models--facebook--opt-tiny', 'snapshots', SHA));
    expect(events.map((e) => e.type)).toEqual(['resolve', 'cache-hit']);
    expect(await resolveModelDir('facebook/opt-tiny', { cacheDir: cache, fetch: unreachable, revision: SHA })).toBe(dir);
    expect(await resolveModelDir('facebook/opt-tiny', { cacheDir: cache, fetch: unreachable, files: TOKENIZER_FILES })).toBe(dir);
    expect(unreachable).not.toHaveBeenCalled();
  });

  it('finds the cache through HF_HUB_CACHE and HF_HOME', async () => {
    vi.stubEnv('HF_HUB_CACHE', cache);
    expect(await resolveModelDir('facebook/opt-tiny', { fetch: unreachable })).toContain(cache);
    vi.stubEnv('HF_HUB_CACHE', undefined);
    vi.stubEnv('HUGGINGFACE_HUB_CACHE', undefined);
    const home = await mkdtemp(join(tmpdir(), 'lora-hfhome-'));
    await symlink(cache, join(home, 'hub'));
    vi.stubEnv('HF_HOME', home);
    expect(await resolveModelDir('facebook/opt-tiny', { fetch: unreachable })).toBe(join(home, 'hub', 'models--facebook--opt-tiny', 'snapshots', SHA));
    await rm(home, { recursive: true });
  });

  it('says which local folder to pass when the hub is unreachable and nothing usable is cached', async () => {
    for (const id of ['facebook/opt-350m', 'facebook/opt-noweights']) {
      const err = await resolveModelDir(id, { cacheDir: cache, fetch: unreachable }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'E_HUB_OFFLINE' });
      expect((err as Error).message).toMatch(new RegExp(`${id}.*unreachable.*pass its local model folder \\(config\\.json \\+ model\\.safetensors or pytorch_model\\.bin\\)`));
    }
    expect(unreachable).toHaveBeenCalled();
  });

  it('never calls fetch in offline mode (HF_HUB_OFFLINE=1)', async () => {
    const spy = vi.fn(async () => new Response('{}'));
    vi.stubEnv('HF_HUB_OFFLINE', '1');
    await expect(resolveModelDir('facebook/opt-350m', { cacheDir: cache, fetch: spy as unknown as typeof fetch })).rejects.toThrow(/offline mode is on/);
    expect(spy).not.toHaveBeenCalled();
  });
});

describe('resolveDatasetDir', () => {
  it('uses datasets--org--name snapshots and fails clearly offline', async () => {
    expect(await resolveDatasetDir('sahil/codealpaca', { cacheDir: cache, fetch: unreachable })).toBe(join(cache, 'datasets--sahil--codealpaca', 'snapshots', SHA));
    expect(await resolveDatasetDir('datasets/sahil/codealpaca', { cacheDir: cache, fetch: unreachable })).toContain('datasets--sahil--codealpaca');
    await expect(resolveDatasetDir('org/missing', { cacheDir: cache, offline: true })).rejects.toThrow(/dataset "org\/missing".*local dataset folder/);
  });
});

/**
 * An in-memory stand-in for the hub's HTTP API, answering exactly the requests @huggingface/hub
 * makes for a snapshot: revision info, file tree, paths-info, and ranged or full file downloads.
 */
function fakeHub(repo: string, sha: string, files: Record<string, string>) {
  const requests: string[] = [];
  const json = (v: unknown) => new Response(JSON.stringify(v), { headers: { 'content-type': 'application/json' } });
  const oid = (name: string) => createHash('sha1').update(files[name]).digest('hex');
  const handler = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
    const path = decodeURIComponent(url.pathname);
    if (path === `/api/models/${repo}/revision/main`) return json({ _id: 'x', id: repo, sha });
    if (path === `/api/models/${repo}/tree/${sha}`) {
      return json(Object.keys(files).map((p) => ({ type: 'file', path: p, size: files[p].length, oid: oid(p) })));
    }
    if (path === `/api/models/${repo}/paths-info/${sha}`) {
      const { paths } = JSON.parse(String(init?.body)) as { paths: string[] };
      return json(paths.map((p) => ({ type: 'file', path: p, size: files[p].length, oid: oid(p) })));
    }
    const prefix = `/${repo}/resolve/${sha}/`;
    if (path.startsWith(prefix) && files[path.slice(prefix.length)] !== undefined) {
      const body = Buffer.from(files[path.slice(prefix.length)]);
      const range = new Headers(init?.headers).get('range')?.match(/^bytes=(\d+)-(\d+)$/);
      const etag = `"${oid(path.slice(prefix.length))}"`;
      if (range) {
        const [start, end] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)];
        return new Response(body.subarray(start, end + 1), { status: 206, headers: { 'content-range': `bytes ${start}-${end}/${body.length}`, etag } });
      }
      return new Response(body, { headers: { 'content-length': String(body.length), etag } });
    }
    return new Response('not found', { status: 404 });
  };
  return { fetch: handler as typeof fetch, requests };
}

describe('downloads through @huggingface/hub (fake hub, no network)', () => {
  it('fetches config, tokenizer and one weights format into the cache, then reuses it offline', async () => {
    const sha = 'b'.repeat(40);
    const hub = fakeHub('org/opt-dl', sha, {
      'config.json': '{"model_type":"opt"}',
      'model.safetensors': 'S'.repeat(5000),
      'pytorch_model.bin': 'P'.repeat(100),
      'vocab.json': '{}',
      'merges.txt': '#version: 0.2\n',
      'README.md': 'readme',
    });
    const events: HubProgressEvent[] = [];
    vi.spyOn(console, 'debug').mockImplementation(() => {});
    const dir = await resolveModelDir('org/opt-dl', { cacheDir: cache, fetch: hub.fetch, onProgress: (e) => events.push(e) });
    expect(dir).toBe(join(cache, 'models--org--opt-dl', 'snapshots', sha));
    expect((await readdir(dir)).sort()).toEqual(['config.json', 'merges.txt', 'model.safetensors', 'vocab.json']);
    expect(await readFile(join(dir, 'model.safetensors'), 'utf8')).toBe('S'.repeat(5000));
    expect(await readFile(join(cache, 'models--org--opt-dl', 'refs', 'main'), 'utf8')).toBe(sha);
    const types = events.map((e) => e.type);
    expect(types[0]).toBe('resolve');
    expect(types.at(-1)).toBe('done');
    expect(types.filter((t) => t === 'file-done')).toHaveLength(4);
    const progress = events.filter((e) => e.type === 'file-progress' && e.file === 'model.safetensors');
    expect(progress.at(-1)).toMatchObject({ loaded: 5000, total: 5000 });

    const again = await resolveModelDir('org/opt-dl', { cacheDir: cache, fetch: unreachable });
    expect(again).toBe(dir);
  });

  it('turns hub errors (unknown repo) into E_HUB', async () => {
    const hub = fakeHub('org/other', 'c'.repeat(40), {});
    await expect(resolveModelDir('org/unknown', { cacheDir: cache, fetch: hub.fetch })).rejects.toMatchObject({
      code: 'E_HUB',
      message: expect.stringMatching(/org\/unknown@main.*HTTP 404.*HF_TOKEN/),
    });
  });
});
