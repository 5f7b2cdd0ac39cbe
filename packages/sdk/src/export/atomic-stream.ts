import { open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * Like io/atomic-write's writeFileAtomic, but for bytes produced asynchronously (a tensor read and
 * converted one at a time, so a multi-GB export never sits in memory whole): the chunks go to a temp
 * file beside `path`, are fsynced, then renamed over it. On any failure (a full disk included) the
 * temp file is removed and nothing appears under the final name.
 */
export async function writeStreamAtomic(path: string, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<number> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx');
  let total = 0;
  try {
    for await (const chunk of chunks) {
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.byteLength - done);
        done += bytesWritten;
      }
      total += chunk.byteLength;
    }
    await handle.sync();
    await handle.close();
    await rename(tmp, path);
    return total;
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}
