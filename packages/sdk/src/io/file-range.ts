import type { FileHandle } from 'node:fs/promises';
import { LoraError } from './errors.js';
import { openRegularFile } from './safe-file.js';

/**
 * Opens a file for positional reads, turning "not found" into an error that names the file; symlinks
 * out of the file's folder and special files (FIFOs, devices) are refused (see safe-file.ts).
 */
export function openForRead(path: string): Promise<{ handle: FileHandle; size: number }> {
  return openRegularFile(path);
}

/**
 * Reads exactly `length` bytes at `position` into a fresh ArrayBuffer-backed array (fresh, so that
 * typed-array views over it are aligned). A short read means the file shrank or lied about its size.
 */
export async function readExactly(handle: FileHandle, position: number, length: number, where: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(out, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new LoraError('E_SAFETENSORS_TRUNCATED', `${where}: unexpected end of file at byte ${position + done}`);
    }
    done += bytesRead;
  }
  return out;
}
