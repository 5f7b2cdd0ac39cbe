import { mkdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { datasetInfo, downloadFileToCacheDir, listFiles, modelInfo } from '@huggingface/hub';
import { LoraError } from '../io/errors.js';
import { cachedSnapshotDir, defaultHubCacheDir, repoFolderName, type RepoType } from './cache-layout.js';
import { fetchWithProgress, type HubProgressListener } from './progress.js';
import { ALL_FILES, MODEL_FILES, TOKENIZER_FILES, type FileSelection } from './selection.js';

export { TOKENIZER_FILES };

export interface ResolveOptions {
  /** Cache root; default HF_HUB_CACHE / HF_HOME/hub / ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Branch, tag or commit hash (default "main"). */
  revision?: string;
  onProgress?: HubProgressListener;
  /** Never touch the network (default: HF_HUB_OFFLINE=1 in the environment). */
  offline?: boolean;
  /** Which files to fetch and what makes a cached snapshot usable (default: MODEL_FILES, or ALL_FILES for datasets). */
  files?: FileSelection;
  /** The fetch @huggingface/hub uses; tests inject one, proxies too. */
  fetch?: typeof fetch;
  /** Default HF_TOKEN from the environment. */
  accessToken?: string;
  hubUrl?: string;
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/;

/**
 * A model as a local folder: an existing folder is used as it is; anything else is a hub id
 * (`facebook/opt-350m`), answered from the standard HF cache when a complete snapshot of the revision
 * is there (no network), else downloaded into that cache with @huggingface/hub.
 */
export function resolveModelDir(idOrDir: string, options: ResolveOptions = {}): Promise<string> {
  return resolveRepoDir(idOrDir, 'model', options);
}

/** The same for a dataset repo (`datasets--org--name` in the cache); fetches every file by default. */
export function resolveDatasetDir(idOrDir: string, options: ResolveOptions = {}): Promise<string> {
  return resolveRepoDir(idOrDir.replace(/^datasets\//, ''), 'dataset', options);
}

async function resolveRepoDir(idOrDir: string, repoType: RepoType, options: ResolveOptions): Promise<string> {
  const local = await stat(idOrDir).catch(() => undefined);
  if (local?.isDirectory()) return resolvePath(idOrDir);
  if (local) throw new LoraError('E_HUB', `${idOrDir} is a file; pass the folder that contains it`);
  if (looksLikePath(idOrDir) || !HUB_ID.test(idOrDir)) {
    throw new LoraError('E_FILE_NOT_FOUND', `folder not found: ${idOrDir} (and it is not a hub id like "facebook/opt-350m")`);
  }

  const repo = idOrDir;
  const revision = options.revision ?? 'main';
  const cacheDir = options.cacheDir ?? defaultHubCacheDir();
  const selection = options.files ?? (repoType === 'dataset' ? ALL_FILES : MODEL_FILES);
  const emit = options.onProgress ?? (() => {});
  emit({ type: 'resolve', repo, repoType, revision });

  const cached = await cachedSnapshotDir(cacheDir, repo, repoType, revision);
  if (cached && (await selection.isComplete(cached))) {
    emit({ type: 'cache-hit', repo, dir: cached });
    return cached;
  }
  const offline = options.offline ?? ['1', 'true', 'yes', 'on'].includes((process.env.HF_HUB_OFFLINE ?? '').toLowerCase());
  if (offline) throw unavailable(repo, repoType, cacheDir, 'offline mode is on (HF_HUB_OFFLINE)');

  try {
    return await download(repo, repoType, revision, cacheDir, selection, options);
  } catch (err) {
    if (err instanceof LoraError) throw err;
    if (isNetworkFailure(err)) throw unavailable(repo, repoType, cacheDir, `the hub is unreachable (${describe(err)})`, err);
    const status = (err as { statusCode?: number }).statusCode;
    const hint = status === 401 || status === 403 || status === 404
      ? ` (HTTP ${status}: check the id and revision; a private or gated repo needs HF_TOKEN or accessToken)`
      : '';
    throw new LoraError('E_HUB', `could not fetch ${repoType} ${repo}@${revision}: ${describe(err)}${hint}`, { cause: err });
  }
}

async function download(
  repo: string,
  repoType: RepoType,
  revision: string,
  cacheDir: string,
  selection: FileSelection,
  options: ResolveOptions,
): Promise<string> {
  const emit = options.onProgress ?? (() => {});
  let current = { file: '', index: 0 };
  const baseFetch = options.fetch ?? fetch;
  const params = {
    fetch: fetchWithProgress(baseFetch, (loaded, total) => emit({ type: 'file-progress', repo, file: current.file, loaded, total })),
    hubUrl: options.hubUrl,
    ...(options.accessToken ?? process.env.HF_TOKEN ? { accessToken: options.accessToken ?? process.env.HF_TOKEN! } : {}),
  };
  const info = repoType === 'model'
    ? await modelInfo({ ...params, name: repo, revision, additionalFields: ['sha'] })
    : await datasetInfo({ ...params, name: repo, revision, additionalFields: ['sha'] });
  const commit = (info as { sha?: string }).sha;
  if (!commit) throw new LoraError('E_HUB', `the hub did not report a commit for ${repo}@${revision}`);

  const repoFiles: string[] = [];
  const designation = { type: repoType, name: repo } as const;
  for await (const entry of listFiles({ ...params, repo: designation, revision: commit, recursive: true })) {
    if (entry.type === 'file') repoFiles.push(entry.path);
  }
  const wanted = selection.pick(repoFiles);
  if (wanted.length === 0) {
    throw new LoraError('E_HUB', `${repoType} ${repo}@${revision} has none of the ${selection.name} files needed (it has: ${repoFiles.slice(0, 20).join(', ')})`);
  }
  let dir = '';
  for (const [index, file] of wanted.entries()) {
    current = { file, index };
    emit({ type: 'file-start', repo, file, index, count: wanted.length });
    const pointer = await downloadFileToCacheDir({ ...params, repo: designation, path: file, revision: commit, cacheDir });
    dir = pointer.slice(0, pointer.length - file.length - 1);
    emit({ type: 'file-done', repo, file, index, count: wanted.length });
  }
  await writeRef(cacheDir, repo, repoType, revision, commit);
  emit({ type: 'done', repo, dir, commit });
  return dir;
}

/** Like huggingface_hub, remember which commit a branch or tag named, so the next run can stay offline. */
async function writeRef(cacheDir: string, repo: string, repoType: RepoType, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  const ref = join(cacheDir, repoFolderName(repo, repoType), 'refs', revision);
  await mkdir(dirname(ref), { recursive: true });
  await writeFile(ref, commit);
}

function unavailable(repo: string, repoType: RepoType, cacheDir: string, why: string, cause?: unknown): LoraError {
  const what = repoType === 'model' ? 'model folder (config.json + model.safetensors or pytorch_model.bin)' : 'dataset folder';
  return new LoraError(
    'E_HUB_OFFLINE',
    `cannot get ${repoType} "${repo}": ${why}, and the HF cache at ${cacheDir} has no complete copy of it. ` +
      `Download it on a machine with access (e.g. \`huggingface-cli download ${repo}\`) and pass its local ${what} instead of the id, ` +
      `or point HF_HUB_CACHE / cacheDir at a cache that has it.`,
    { cause },
  );
}

function looksLikePath(s: string): boolean {
  return s.startsWith('.') || s.startsWith('/') || s.startsWith('~') || s.includes('\\') || s.split('/').length > 2;
}

const NETWORK_CODES = new Set(['ENOTFOUND', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** fetch reports an unreachable host as a TypeError("fetch failed") whose cause has the errno code. */
function isNetworkFailure(err: unknown): boolean {
  for (let e = err as { code?: string; cause?: unknown; name?: string; message?: string } | undefined; e; e = e.cause as typeof e) {
    if (e.code && NETWORK_CODES.has(e.code)) return true;
    if (e.name === 'TypeError' && e.message === 'fetch failed') return true;
  }
  return false;
}

function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  return [e?.message ?? String(err), e?.cause?.code ?? e?.cause?.message].filter(Boolean).join(': ');
}
