// Distributed training's communicator: one per process, over Open MPI (CPU ranks) and, when the
// plug-in was built with it, NCCL (GPU ranks). Launched by `mpirun -np N`, the rank and world size
// come from MPI; without a launcher (or without MPI) there is no communicator and training runs
// single-process.
//
// Every collective runs on a worker thread and returns a promise, so the event loop keeps turning
// while a rank waits for its peers; each has a timeout (default $LORA_DIST_TIMEOUT_S or 600 s) after
// which it rejects with ERR_LORA_DIST_TIMEOUT — the caller then calls abort(), which ends every rank.
// A rank that dies (signal, exit without finalize) is seen by mpirun, which ends the others itself.
import { loadAddon } from './loader.js';
import type { NativeTensor } from './native.js';

export interface DistInfo {
  /** The MPI plug-in was built (CMake found MPI). */
  built: boolean;
  /** The plug-in and libmpi load here. */
  usable: boolean;
  /** "MPI unavailable: <why>" when not usable, else "". */
  reason: string;
  pluginPath: string;
  /** MPI's library version, once initialised. */
  library: string;
  ncclBuilt: boolean;
  /** "NCCL unavailable: <why>" when not built, else "". */
  ncclReason: string;
  /** Rank and size from the launcher's environment (OMPI_COMM_WORLD_*, PMI_*); -1 / 0 when not launched by one. */
  envRank: number;
  envSize: number;
}

interface DistAddon {
  distInfo(): DistInfo;
  distInit(): Promise<{ rank: number; size: number; library: string }>;
  distAllreduce(buf: NativeTensor[] | Float32Array | Float64Array, timeoutS: number): Promise<void>;
  distBroadcast(bytes: Uint8Array, root: number, timeoutS: number): Promise<void>;
  distBarrier(timeoutS: number): Promise<void>;
  distAbort(code: number, message: string): never;
  distFinalize(): void;
}

const addon = () => loadAddon().addon as unknown as DistAddon;

export function distInfo(): DistInfo {
  return addon().distInfo();
}

/** Seconds a collective may wait for the slowest rank: $LORA_DIST_TIMEOUT_S, else 600. */
export function defaultDistTimeout(): number {
  const raw = process.env.LORA_DIST_TIMEOUT_S;
  if (raw === undefined || raw === '') return 600;
  const v = Number(raw);
  if (!(v > 0 && v <= 86400)) {
    throw Object.assign(new Error(`lora: LORA_DIST_TIMEOUT_S must be a number of seconds in (0, 86400], got '${raw.slice(0, 32)}'`), { code: 'ERR_LORA_INVALID_ARG', arg: 'LORA_DIST_TIMEOUT_S' });
  }
  return v;
}

export class Communicator {
  private finalized = false;

  private constructor(
    readonly rank: number,
    readonly size: number,
    readonly library: string,
    readonly timeoutS: number,
  ) {}

  /**
   * The communicator of a process started by mpirun (world size > 1), or undefined when the process
   * was not started by a launcher or the launcher started one rank. Launched with several ranks but
   * without a usable MPI plug-in is an error (ERR_LORA_DIST), not a silent single-process run: every
   * rank would train the whole data alone.
   */
  static async fromEnvironment(o: { timeoutS?: number } = {}): Promise<Communicator | undefined> {
    const info = distInfo();
    if (info.envSize <= 1) return undefined;
    if (!info.usable) {
      throw Object.assign(new Error(`lora: launched as rank ${info.envRank} of ${info.envSize}, but ${info.reason}`), { code: 'ERR_LORA_DIST' });
    }
    const r = await addon().distInit();
    return new Communicator(r.rank, r.size, r.library, o.timeoutS ?? defaultDistTimeout());
  }

  /** In-place sum over all ranks; every rank gets the same bits. Tensors: f32 host tensors, summed as one packed buffer. */
  allreduceSum(buf: NativeTensor[] | Float32Array | Float64Array): Promise<void> {
    return addon().distAllreduce(buf, this.timeoutS);
  }

  /** Root's bytes into every rank's buffer (same length on every rank). */
  broadcast(bytes: Uint8Array, root = 0): Promise<void> {
    return addon().distBroadcast(bytes, root, this.timeoutS);
  }

  barrier(): Promise<void> {
    return addon().distBarrier(this.timeoutS);
  }

  /** Prints `message` with this rank's number on stderr and ends every rank of the job (MPI_Abort). */
  abort(code: number, message: string): never {
    return addon().distAbort(Math.min(255, Math.max(1, Math.trunc(code) || 1)), message);
  }

  /** MPI_Finalize; call once, after the last collective. mpirun treats a rank that exits without it as failed. */
  finalize(): void {
    if (this.finalized) return;
    this.finalized = true;
    addon().distFinalize();
  }
}
