import type { DType, TensorData } from './dtype.js';

/** A tensor in host memory as the file formats carry it: row-major, contiguous, little-endian. */
export interface RawTensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

/** What is known about a tensor before its bytes are read. */
export interface TensorInfo {
  dtype: DType;
  shape: number[];
}

/**
 * A set of named tensors that are read on demand: one safetensors file, a sharded checkpoint or a
 * pytorch_model.bin. Callers read one tensor at a time so a large checkpoint never sits in memory whole.
 */
export interface WeightSource {
  /** Tensor names in file order. */
  keys(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  read(name: string): Promise<RawTensor>;
  /** Free file handles; idempotent. */
  close(): Promise<void>;
}
