// Device and compute-dtype choices of a model, and how the SDK names backends.
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

/** Where kernels run: 'cpu' picks the AVX-512 backend when usable (else the scalar reference). */
export type DeviceOption = 'auto' | 'cpu' | 'ref' | 'emu' | 'cuda';
/** Resolved backend names, as the native op tables call them. */
export type Backend = 'ref' | 'cpu' | 'emu' | 'cuda';
/** Base weight formats. f32/f16/bf16 are stored as such; int8/int4/nf4 are quantized at load. */
export type BaseDType = 'f32' | 'bf16' | 'f16' | 'int8' | 'int4' | 'nf4';

export interface ResolvedDevice {
  backend: Backend;
  /** Memory the tensors live in. */
  memory: DeviceName;
  /** Why this backend was chosen (e.g. the fallback reason), for logs and `lora env`. */
  note: string;
}

/** Picks a backend for a device option; throws a clear error for one that cannot run here. */
export function resolveDevice(option: DeviceOption = 'auto'): ResolvedDevice {
  const backends = native().backends();
  const status = (n: string) => backends.find((b) => b.name === n);
  const usable = (n: string) => status(n)?.usable === true;
  if (option === 'auto') {
    if (usable('cuda')) return { backend: 'cuda', memory: 'cuda', note: 'auto: CUDA GPU found' };
    if (usable('cpu')) return { backend: 'cpu', memory: 'cpu', note: `auto: no GPU (${status('cuda')?.reason ?? 'CUDA not built'}); AVX-512 CPU backend` };
    return { backend: 'ref', memory: 'cpu', note: `auto: no GPU; ${status('cpu')?.reason ?? 'no AVX-512'}; scalar reference` };
  }
  if (option === 'cpu') {
    if (usable('cpu')) return { backend: 'cpu', memory: 'cpu', note: 'AVX-512 CPU backend' };
    return { backend: 'ref', memory: 'cpu', note: `cpu: ${status('cpu')?.reason ?? 'AVX-512 backend unavailable'}; scalar reference` };
  }
  if (!usable(option)) {
    const err = new Error(`device '${option}' is not available here: ${status(option)?.reason ?? 'unknown backend'}`) as Error & { code: string };
    err.code = 'ERR_LORA_DEVICE';
    throw err;
  }
  return { backend: option, memory: option === 'ref' ? 'cpu' : (option as DeviceName), note: option };
}

/** Disposes every tensor in a list or record, skipping undefined; safe to call twice. */
export function disposeAll(ts: Iterable<NativeTensor | undefined> | Record<string, NativeTensor | undefined>): void {
  const list = Symbol.iterator in ts ? (ts as Iterable<NativeTensor | undefined>) : Object.values(ts);
  for (const t of list) t?.dispose();
}
