/**
 * The one error type of the SDK's input/output layer. `code` is stable and meant for programs
 * (tests, the CLI's exit paths); `message` is meant for people and names the file or field at fault.
 */
export type LoraErrorCode =
  | 'E_FILE_NOT_FOUND'
  | 'E_SAFETENSORS_HEADER'
  | 'E_SAFETENSORS_TRUNCATED'
  | 'E_SAFETENSORS_OFFSETS'
  | 'E_DTYPE'
  | 'E_SHAPE'
  | 'E_DUPLICATE_KEY'
  | 'E_TENSOR_NOT_FOUND'
  | 'E_SHARD_INDEX'
  | 'E_ZIP'
  | 'E_PICKLE'
  | 'E_PICKLE_FORBIDDEN'
  | 'E_TORCH_FORMAT'
  | 'E_TOKENIZER'
  | 'E_CONFIG'
  | 'E_WEIGHTS_MISMATCH'
  | 'E_HUB_OFFLINE'
  | 'E_HUB'
  | 'E_DATA'
  | 'E_OUTPUT_DIR'
  | 'E_OUTPUT_LOCKED'
  | 'E_RESUME'
  | 'E_CHECKPOINT'
  /** A tensor or setting holds NaN/Infinity, or values so large they overflow in use. */
  | 'E_NON_FINITE';

export class LoraError extends Error {
  readonly code: LoraErrorCode;

  constructor(code: LoraErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LoraError';
    this.code = code;
  }
}

/** True when `err` is a LoraError, optionally of one code; handy in catch blocks and tests. */
export function isLoraError(err: unknown, code?: LoraErrorCode): err is LoraError {
  return err instanceof LoraError && (code === undefined || err.code === code);
}
