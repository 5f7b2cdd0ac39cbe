// @lora/core-native: the addon loader, native tensor types and environment report.
export { loadAddon, type LoadedAddon, type AddonVariant } from './loader.js';
export { environment, formatEnvironment, type EnvironmentReport } from './environment.js';
export { Communicator, distInfo, defaultDistTimeout, type DistInfo } from './dist.js';
export type {
  DType,
  DeviceName,
  HostArray,
  NativeTensor,
  NativeTensorStatic,
  NativeAddon,
  BuildInfo,
  CpuInfo,
  CudaInfo,
  BackendStatus,
  MemoryStats,
  NvmlInfo,
  NvmlSample,
} from './native.js';

import { loadAddon } from './loader.js';
import type { NativeAddon } from './native.js';

/** The loaded addon (loads on first call). */
export function native(): NativeAddon {
  return loadAddon().addon;
}
export * as ops from './ops.js';
export type {
  OpBackend,
  OpOptions,
  ActDType,
  WeightDType,
  CrossEntropyResult,
  OpSupport,
} from './ops.js';
export { runKernelBench, type KernelBenchOptions } from './bench-kernels.js';
