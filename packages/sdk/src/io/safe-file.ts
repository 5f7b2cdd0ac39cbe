import { constants } from 'node:fs';
import { lstat, open, realpath, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, relative, isAbsolute } from 'node:path';
import { LoraError } from './errors.js';

/**
 * Opening files of model, adapter and checkpoint folders, which are untrusted input:
 * - a symlink is followed only when it resolves inside the folder that holds it (or, for a Hugging
 *   Face cache snapshot `…/snapshots/<rev>/`, into that repo's `…/blobs/`, which is how the cache
 *   stores every file); a link to `/etc/shadow` named config.json is refused;
 * - only regular files are read: a FIFO named config.json would block open() forever, a device
 *   would never end, so the open is non-blocking and the opened handle is checked with fstat;
 * - errors name the file and what was wrong with it, never what it contains.
 */
export async function openRegularFile(path: string): Promise<{ handle: FileHandle; size: number }> {
  const link = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    throw notFoundOr(err, path);
  });
  let target = path;
  if (link.isSymbolicLink()) {
    target = await realpath(path).catch((err: NodeJS.ErrnoException) => {
      throw notFoundOr(err, path, 'a symlink to a missing file');
    });
    const folder = await realpath(dirname(path));
    if (!isInside(target, folder) && !isInside(target, hubBlobsOf(folder))) {
      throw new LoraError('E_FILE_TYPE', `${path} is a symlink to a file outside its folder; refusing to follow it (copy the file into the folder instead)`);
    }
  }
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; O_NOFOLLOW: the
    // checked path cannot be swapped for a link between the check above and the open.
    handle = await open(target, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new LoraError('E_FILE_TYPE', `${path} changed into a symlink while being opened`);
    throw notFoundOr(err as NodeJS.ErrnoException, path);
  }
  const s = await handle.stat();
  if (!s.isFile()) {
    await handle.close();
    throw new LoraError('E_FILE_TYPE', `${path} is ${kindOf(s)}, not a regular file`);
  }
  return { handle, size: s.size };
}

/** A whole small file (configs, indexes), refused with E_TOO_LARGE past `maxBytes` before reading it. */
export async function readSmallFile(path: string, maxBytes: number): Promise<Uint8Array> {
  const { handle, size } = await openRegularFile(path);
  try {
    if (size > maxBytes) throw new LoraError('E_TOO_LARGE', `${path} is ${size} bytes; a file of this kind is at most ${maxBytes} bytes`);
    const out = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(out, done, size - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return out.subarray(0, done);
  } finally {
    await handle.close();
  }
}

/** The JSON config/index files of a model folder are a few kB; 16 MiB leaves room for any real one. */
export const MAX_JSON_FILE_BYTES = 16 * 1024 * 1024;

/**
 * Reads and parses a JSON file of a model folder. A syntax error says where, never quotes the text
 * (V8's own message quotes the start of the input, which would echo a linked file's contents).
 */
export async function readJsonFile(path: string, code: 'E_CONFIG' | 'E_SHARD_INDEX' = 'E_CONFIG', maxBytes = MAX_JSON_FILE_BYTES): Promise<unknown> {
  const bytes = await readSmallFile(path, maxBytes);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new LoraError(code, `${path}: not valid UTF-8 text`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LoraError(code, `${path}: not valid JSON (${jsonSyntaxError(err)})`);
  }
}

/** What went wrong in a JSON.parse, without the excerpt of the input that V8 puts in its message. */
export function jsonSyntaxError(err: unknown): string {
  const message = err instanceof Error ? err.message : '';
  if (/end of JSON input/.test(message)) return 'it ends early';
  const at = /at position (\d+)/.exec(message);
  return at ? `syntax error at character ${at[1]}` : 'syntax error';
}

function isInside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/** `<repo>/blobs` for a cache snapshot folder `<repo>/snapshots/<rev>`; a path nothing is inside otherwise. */
function hubBlobsOf(folder: string): string {
  const snapshots = dirname(folder);
  if (basename(snapshots) !== 'snapshots') return join(folder, '\0none');
  return join(dirname(snapshots), 'blobs');
}

function notFoundOr(err: NodeJS.ErrnoException, path: string, what = 'file not found'): Error {
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return new LoraError('E_FILE_NOT_FOUND', `${what}: ${path}`, { cause: err });
  if (err.code === 'EISDIR') return new LoraError('E_FILE_TYPE', `${path} is a folder, not a file`);
  return err;
}

function kindOf(s: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (s.isDirectory()) return 'a folder';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice() || s.isBlockDevice()) return 'a device';
  return 'not a plain file';
}
