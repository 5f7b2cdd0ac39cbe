export { LoraError, isLoraError, type LoraErrorCode } from './errors.js';
export {
  DTYPES, isDType, itemSize, numel, viewAs, bf16ToF32, f32ToBf16, f16ToF32, f32ToF16, toF32,
  type DType, type TensorData, type TypedArrayOf,
} from './dtype.js';
export type { RawTensor, TensorInfo, WeightSource } from './tensor.js';
export { writeFileAtomic } from './atomic-write.js';
export { SafetensorsFile, parseSafetensors } from './safetensors-reader.js';
export { serializeSafetensors, encodeSafetensors, writeSafetensors, type TensorMap } from './safetensors-writer.js';
export { ShardedSafetensors, SAFETENSORS_INDEX } from './sharded.js';
export { ZipArchive, type ZipEntry } from './zip.js';
export { unpickle, PyDict, isTuple, type PyGlobal, type UnpickleOptions } from './pickle.js';
export { unpickleTorchStateDict, type TorchStorage, type TorchTensorRef } from './torch-pickle.js';
export { TorchCheckpoint } from './torch-checkpoint.js';
export { openWeights, findWeightsFile, WEIGHT_FILES } from './open-weights.js';
