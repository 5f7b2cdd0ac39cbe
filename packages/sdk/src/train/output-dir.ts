// A run's output folder, made ready before anything expensive happens: created, write-probed (a
// read-only path, a file in the way, EACCES are named with a code now, not after the last step),
// locked against a second run (an exclusive lock file holding the pid; a lock whose pid is dead is
// taken over), and refused when it holds another run unless the caller resumes it or overwrites it.
import { closeSync, existsSync, openSync, readFileSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { mkdir, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

import { LoraError } from '../io/errors.js';
import { pidAlive } from './checkpoint.js';
import { FINAL_TRAINER_STATE, TRAIN_RESULTS, TRAINER_LOG, TRAINING_ARGS } from './records.js';

export const LOCK_FILE = '.lora-train.lock';
/** What marks a folder as holding a run (besides checkpoints). */
const RUN_FILES = [TRAINING_ARGS, TRAINER_LOG, TRAIN_RESULTS, 'eval_results.json', FINAL_TRAINER_STATE, 'adapter_model.safetensors', 'adapter_config.json'];

export interface OutputDir {
  dir: string;
  checkpoints: string;
  /** Removes the lock (also done on process exit). */
  release(): void;
}

function explain(e: NodeJS.ErrnoException, path: string, doing: string): LoraError {
  const why: Record<string, string> = {
    EACCES: 'permission denied', EPERM: 'operation not permitted', EROFS: 'read-only file system',
    ENOTDIR: 'a file is in the way (not a folder)', EEXIST: 'a file is in the way', ENOSPC: 'no space left on the device',
  };
  return new LoraError('E_OUTPUT_DIR', `${path}: cannot ${doing}: ${why[e.code ?? ''] ?? e.message} (${e.code ?? 'error'})`, { cause: e });
}

function takeLock(path: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code !== 'EEXIST') throw explain(err, path, 'create the lock file');
      let pid = 0;
      try {
        pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
      } catch {
        // unreadable: treated as stale below
      }
      if (pid !== process.pid && pidAlive(pid)) {
        throw new LoraError('E_OUTPUT_LOCKED', `${path}: another training run (pid ${pid}) is writing to this folder; wait for it or use another --out (if no run is using the folder, delete the lock file)`);
      }
      try {
        unlinkSync(path); // stale: its process is gone
      } catch {
        // someone else took it over first; the next open tells
      }
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    return;
  }
  throw new LoraError('E_OUTPUT_LOCKED', `${path}: another run took the lock first`);
}

/**
 * Kernel pseudo file systems cannot hold a run, and Node's recursive mkdir spins forever under
 * /proc (seen: `lora train --out /proc/x` hung). Judged by the real path of the nearest folder that exists.
 */
function refusePseudoFs(dir: string): void {
  let p = resolve(dir);
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  let real = p;
  try {
    real = realpathSync(p);
  } catch {
    // unreadable: mkdir below names the error
  }
  if (/^\/(proc|sys|dev)(\/|$)/.test(real)) {
    throw new LoraError('E_OUTPUT_DIR', `${dir}: is on a kernel pseudo file system (${real.split('/')[1]}); choose another --out`);
  }
}

/** Names of what in `dir` belongs to a previous run. */
async function previousRun(dir: string, checkpoints: string): Promise<string[]> {
  const names = new Set(await readdir(dir));
  const found = RUN_FILES.filter((f) => names.has(f));
  try {
    if ((await readdir(checkpoints)).some((n) => /^checkpoint-\d+$/.test(n))) found.push('checkpoints/');
  } catch {
    // no checkpoints folder
  }
  return found;
}

export async function prepareOutputDir(dir: string, o: { resume?: boolean; overwrite?: boolean; checkpoints?: string } = {}): Promise<OutputDir> {
  const checkpoints = o.checkpoints ?? join(dir, 'checkpoints');
  try {
    const s = await stat(dir);
    if (!s.isDirectory()) throw new LoraError('E_OUTPUT_DIR', `${dir}: is a file, not a folder; choose another --out`);
  } catch (e) {
    if (e instanceof LoraError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw explain(e as NodeJS.ErrnoException, dir, 'use it as the output folder');
  }
  refusePseudoFs(dir);
  try {
    await mkdir(checkpoints, { recursive: true });
  } catch (e) {
    throw explain(e as NodeJS.ErrnoException, checkpoints, 'create the output folder');
  }
  const lock = join(dir, LOCK_FILE);
  takeLock(lock);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    try {
      if (Number.parseInt(readFileSync(lock, 'utf8'), 10) === process.pid) unlinkSync(lock);
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  try {
    // A probe file in the checkpoints folder: creating the lock proved `dir` writable.
    const probe = join(checkpoints, `.write-probe-${process.pid}`);
    try {
      await writeFile(probe, 'probe');
      await unlink(probe);
    } catch (e) {
      throw explain(e as NodeJS.ErrnoException, checkpoints, 'write checkpoints there');
    }
    const previous = await previousRun(dir, checkpoints);
    if (previous.length && !o.resume) {
      if (!o.overwrite) {
        throw new LoraError('E_OUTPUT_DIR', `${dir}: holds another run (${previous.join(', ')}); pass --overwrite-output-dir to replace it, --resume to continue it, or choose another --out`);
      }
      for (const f of RUN_FILES) await rm(join(dir, f), { force: true });
      await rm(join(dir, 'runs'), { recursive: true, force: true });
      await rm(checkpoints, { recursive: true, force: true });
      await mkdir(checkpoints, { recursive: true });
    }
  } catch (e) {
    release();
    throw e;
  }
  return { dir, checkpoints, release };
}
