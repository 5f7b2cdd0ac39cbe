// Types of the raw addon exports. The SDK uses these through index.ts; nothing here is OPT-specific.

/**
 * Element types of native tensors. int4/nf4 are packed two per byte with per-block f32 scales;
 * bf16p is a bf16 weight in the cpu backend's packed panel layout (made by `quantize(w, 'bf16p')`).
 */
export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'i64' | 'i8' | 'u8' | 'int4' | 'nf4' | 'bf16p';
/** 'cpu' host memory, 'emu' host memory playing device memory for the CUDA emulator, 'cuda[:N]'. */
export type DeviceName = 'cpu' | 'emu' | 'cuda' | `cuda:${number}`;

export type HostArray = Float32Array | Float64Array | Uint16Array | Int32Array | BigInt64Array | Int8Array | Uint8Array;

/** A handle on native memory. Call dispose() (or use `using`) when done; the GC is only a safety net. */
export interface NativeTensor {
  readonly dtype: DType;
  readonly shape: number[];
  readonly strides: number[];
  readonly device: string;
  readonly numel: number;
  readonly nbytes: number;
  readonly disposed: boolean;
  readonly blockSize: number;
  readonly contiguous: boolean;
  /** A copy: Float32Array for f32/f16/bf16, Int32Array, BigInt64Array, Int8Array, or raw Uint8Array for u8/int4/nf4. */
  toArray(): Float32Array | Int32Array | BigInt64Array | Int8Array | Uint8Array;
  /** The raw element bytes (f16/bf16 bits, packed nibbles). */
  bytes(): Uint8Array;
  /** The quantization scales of an i8/int4/nf4 weight. */
  scales(): Float32Array | undefined;
  copyFrom(data: HostArray): this;
  to(device: DeviceName): NativeTensor;
  clone(): NativeTensor;
  reshape(shape: number[]): NativeTensor;
  narrow(dim: number, start: number, length: number): NativeTensor;
  dispose(): void;
  [Symbol.dispose](): void;
}

export interface NativeTensorStatic {
  empty(dtype: DType, shape: number[], device?: DeviceName): NativeTensor;
  fromArray(data: HostArray, shape: number[], dtype?: DType, device?: DeviceName): NativeTensor;
  fromQuantized(packed: Uint8Array | Int8Array, scales: Float32Array, shape: number[], dtype: 'int4' | 'nf4' | 'i8', blockSize: number, device?: DeviceName): NativeTensor;
  prototype: NativeTensor;
}

export interface BuildInfo {
  cuda: boolean;
  emu: boolean;
  sanitize: boolean;
  cudaArchs: string;
  compiler: string;
  napiVersion: number;
  buildType: string;
}

export interface CpuInfo {
  vendor: string;
  model: string;
  logicalCores: number;
  features: Record<'avx2' | 'fma' | 'f16c' | 'avx512f' | 'avx512bw' | 'avx512vl' | 'avx512dq' | 'avx512bf16' | 'avx512vnni' | 'osAvx512', boolean>;
}

export interface CudaInfo {
  built: boolean;
  usable: boolean;
  reason: string;
  runtimeVersion: number;
  driverVersion: number;
  deviceCount: number;
  deviceName: string;
  totalMemory: number;
  computeCapability: string;
  /** PCI bus id of device 0 ("" without a GPU); NVML samples the GPU with this id. */
  pciBusId: string;
}

export interface BackendStatus {
  name: 'ref' | 'cpu' | 'emu' | 'cuda' | string;
  built: boolean;
  usable: boolean;
  reason: string;
}

export interface MemoryStats {
  device: string;
  allocated: number;
  reserved: number;
  peakAllocated: number;
  peakReserved: number;
  requested: number;
  numAllocs: number;
  numRawAllocs: number;
  cacheHits: number;
}

/** NVML (loaded at run time with dlopen): whether GPU utilisation can be sampled here, and why not. */
export interface NvmlInfo {
  available: boolean;
  /** "NVML unavailable: <reason>" when not available, else "". */
  reason: string;
  driverVersion: string;
  deviceCount: number;
  /** NVML index of the sampled GPU (the one CUDA calls device 0, matched by PCI bus id); -1 without NVML. */
  deviceIndex: number;
  deviceName: string;
}

/** One sample of the native NVML sampler thread. */
export interface NvmlSample {
  /** Milliseconds since nvmlStart. */
  tMs: number;
  /** % of the last NVML sample period during which a kernel was running. */
  gpuUtilPct: number;
  /** % of the last NVML sample period during which device memory was read or written. */
  memAccessPct: number;
  memUsedBytes: number;
}

/** The addon's exports. Op families add their functions to this object (see ops.ts). */
export interface NativeAddon {
  Tensor: NativeTensorStatic;
  buildInfo(): BuildInfo;
  cpuInfo(): CpuInfo;
  cudaInfo(): CudaInfo;
  backends(): BackendStatus[];
  memoryStats(device?: DeviceName): MemoryStats;
  resetPeakMemory(device?: DeviceName): void;
  emptyCache(device?: DeviceName): void;
  nvmlInfo(): NvmlInfo;
  /** Starts the process-wide NVML sampler thread (restarting it if running); started: false with the reason without NVML. */
  nvmlStart(intervalMs?: number): { started: boolean; reason: string };
  /** Stops the sampler and returns its samples ([] when it was not running). */
  nvmlStop(): NvmlSample[];
  nvmlRunning(): boolean;
  errorCodes: Record<string, string>;
  [op: string]: unknown;
}

/** Option and result types of the op wrappers (lib/ops.ts), re-exported for typing addon users. */
export type { OpBackend, OpOptions, ActDType, WeightDType, CrossEntropyResult, OpSupport } from './ops.js';
