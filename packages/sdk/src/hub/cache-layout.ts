import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { getHFHubCachePath } from '@huggingface/hub';
import { readSmallFile } from '../io/safe-file.js';

export type RepoType = 'model' | 'dataset';

/**
 * The cache root transformers and huggingface_hub share: HF_HUB_CACHE, else HF_HOME/hub, else
 * ~/.cache/huggingface/hub (XDG_CACHE_HOME respected), as @huggingface/hub computes it.
 */
export function defaultHubCacheDir(): string {
  return getHFHubCachePath();
}

/** `models--org--name` / `datasets--org--name`, the folder of one repo inside the cache. */
export function repoFolderName(repo: string, type: RepoType): string {
  return [`${type}s`, ...repo.split('/')].join('--');
}

export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/**
 * The snapshot folder of `revision` if the cache has it: a commit hash names its folder directly,
 * a branch or tag goes through `refs/<revision>`, which holds the commit it pointed to when fetched.
 */
export async function cachedSnapshotDir(cacheDir: string, repo: string, type: RepoType, revision: string): Promise<string | undefined> {
  const storage = join(cacheDir, repoFolderName(repo, type));
  let commit = revision;
  if (!COMMIT_HASH.test(revision)) {
    try {
      // A ref file holds a 40-character hash; 4 kB is plenty, and a FIFO there is refused, not waited on.
      commit = new TextDecoder().decode(await readSmallFile(join(storage, 'refs', revision), 4096)).trim();
    } catch {
      return undefined;
    }
    if (!COMMIT_HASH.test(commit)) return undefined;
  }
  const dir = join(storage, 'snapshots', commit);
  const s = await stat(dir).catch(() => undefined);
  return s?.isDirectory() ? dir : undefined;
}

/** True when `name` exists in `dir` and resolves to a file (a dangling blob symlink does not count). */
export async function hasFile(dir: string, name: string): Promise<boolean> {
  const s = await stat(join(dir, name)).catch(() => undefined);
  return s?.isFile() ?? false;
}

export async function isNonEmptyDir(dir: string): Promise<boolean> {
  return (await readdir(dir).catch(() => [])).length > 0;
}
