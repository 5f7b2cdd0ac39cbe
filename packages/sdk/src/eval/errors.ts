/** Errors of the evaluation layer; `code` is stable for programs, `message` is written for people. */
export type EvalErrorCode =
  /** WordNet's dictionary files were not found (METEOR's synonym stage needs them). */
  | 'E_WORDNET_MISSING'
  /** A WordNet file is there but does not parse. */
  | 'E_WORDNET_FORMAT'
  /** A metric was called with arguments it cannot score (for example no references at all). */
  | 'E_EVAL_ARGS'
  /** An input file of predictions/references is malformed. */
  | 'E_EVAL_INPUT'
  /** An OpenAI-compatible evaluation target refused a request or answered something unusable. */
  | 'E_EVAL_TARGET';

export class EvalError extends Error {
  readonly code: EvalErrorCode;

  constructor(code: EvalErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EvalError';
    this.code = code;
  }
}
