/**
 * Files and errors: safetensors read/write (sharded too), finding a model folder's weights, atomic
 * file writes, tensor dtype helpers, and {@link LoraError} with its stable codes. The zip and pickle
 * readers behind `pytorch_model.bin` are internal.
 *
 * @module Files and errors
 */
export { LoraError, isLoraError, type LoraErrorCode } from '../io/errors.js';
export {
  DTYPES, isDType, itemSize, numel, viewAs, bf16ToF32, f32ToBf16, f16ToF32, f32ToF16, toF32,
  type DType, type TensorData, type TypedArrayOf,
} from '../io/dtype.js';
export type { RawTensor, TensorInfo, WeightSource } from '../io/tensor.js';
export { writeFileAtomic } from '../io/atomic-write.js';
export { SafetensorsFile, parseSafetensors } from '../io/safetensors-reader.js';
export { serializeSafetensors, encodeSafetensors, writeSafetensors, type TensorMap } from '../io/safetensors-writer.js';
export { ShardedSafetensors, SAFETENSORS_INDEX } from '../io/sharded.js';
export { openWeights, findWeightsFile, WEIGHT_FILES } from '../io/open-weights.js';
