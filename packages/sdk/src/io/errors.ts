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
  /** An input would need more memory or work than a file of its size can justify (zip bomb, huge config value). */
  | 'E_TOO_LARGE'
  /** A tensor or setting holds NaN/Infinity, or values so large they overflow in use. */
  | 'E_NON_FINITE'
  /** A symlink leading out of its folder, or a FIFO/device/socket where a file was expected. */
  | 'E_FILE_TYPE'
  /** Stored bytes fail their checksum (bit flips, a corrupted copy). */
  | 'E_CHECKSUM'
  /** Data-parallel training: ranks disagree on the run's settings, or a collective failed or timed out. */
  | 'E_DIST'
  /** `lora serve`'s model worker thread exited before the model was loaded. */
  | 'E_WORKER';

export class LoraError extends Error {
  readonly code: LoraErrorCode;
  /** The config field or setting at fault, when one is (e.g. "num_hidden_layers"). */
  readonly field?: string;

  constructor(code: LoraErrorCode, message: string, options?: { cause?: unknown; field?: string }) {
    super(message, options);
    this.name = 'LoraError';
    this.code = code;
    if (options?.field !== undefined) this.field = options.field;
  }
}

/** True when `err` is a LoraError, optionally of one code; handy in catch blocks and tests. */
export function isLoraError(err: unknown, code?: LoraErrorCode): err is LoraError {
  return err instanceof LoraError && (code === undefined || err.code === code);
}
