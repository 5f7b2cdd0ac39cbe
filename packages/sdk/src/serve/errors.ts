// Errors the server answers with, in OpenAI's error shape ({ error: { message, type, param, code } },
// which the official clients parse into their APIError classes) and the HTTP status they go with.
export type ServeErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

export class ServeError extends Error {
  readonly type: ServeErrorType;
  constructor(
    readonly status: number,
    /** Stable machine-readable code (e.g. 'model_not_found', 'queue_full'). */
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    /** Seconds, sent as Retry-After (429, 503). */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'ServeError';
    this.type = status === 401 ? 'authentication_error' : status === 404 ? 'not_found_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
  }

  toJSON(): { error: { message: string; type: ServeErrorType; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code = 'invalid_value') => new ServeError(400, code, message, param);
