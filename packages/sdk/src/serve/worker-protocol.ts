// The messages between the main thread (HTTP, tokenizer, text streaming) and the model's worker
// thread (model, scheduler, adapters). Plain data only (structured clone). The worker sends what
// happened since its last message in one batch — in practice one message per model step, with that
// step's tokens for every row, so the main thread handles one message per step, not per token.
import type { LoadOptions } from '../models/causal-lm.js';
import type { ModelInfo } from './backend.js';
import type { EngineOptions } from './engine.js';
import type { FinishReason, SamplingParams } from './scheduler.js';

/** The load options that can cross to the worker (no callbacks). */
export type WorkerLoadOptions = Pick<LoadOptions, 'device' | 'dtype' | 'packWeights' | 'cacheDir' | 'revision'>;

export interface WorkerInit {
  source: string;
  load: WorkerLoadOptions;
  baseName: string;
  scheduler: { maxBatch: number; prefillChunk: number; kvBudgetBytes: number };
  engine: EngineOptions;
}

/** An error as it crosses threads: a ServeError's status/code/param, a LoraError's code, a native error's code. */
export interface WireError {
  message: string;
  name?: string;
  code?: string;
  status?: number;
  param?: string | null;
  field?: string;
}

export type ToWorker =
  | { t: 'submit'; id: number; prompt: number[]; adapter?: string; sampling: SamplingParams }
  | { t: 'cancel' | 'pause' | 'resume'; id: number }
  | { t: 'load'; rid: number; name: string; path: string }
  | { t: 'unload'; rid: number; name: string }
  | { t: 'cancel-all' }
  | { t: 'close' };

export type WorkerEvent =
  /** Sampled tokens in order, as pairs: request id, token id, request id, token id, ... */
  | { t: 'tokens'; pairs: number[] }
  /** A request left the worker (its row and cache are freed). */
  | { t: 'done'; id: number; finishReason: FinishReason; error?: WireError }
  | { t: 'step'; rows: number; tokens: number; ms: number }
  /** The answer to a load or unload. */
  | { t: 'reply'; rid: number; error?: WireError };

export interface WorkerCounters {
  queueDepth: number;
  runningRows: number;
  kvBytesInUse: number;
}

export type FromWorker =
  | { t: 'ready'; info: ModelInfo & { kvBytesPerPosition: number } }
  | { t: 'load-failed'; error: WireError }
  | { t: 'events'; events: WorkerEvent[]; counters: WorkerCounters }
  | { t: 'closed' };

export function toWire(e: unknown): WireError {
  if (!(e instanceof Error)) return { message: String(e) };
  const x = e as Error & { code?: unknown; status?: unknown; param?: unknown; field?: unknown };
  return {
    message: x.message, name: x.name,
    ...(typeof x.code === 'string' ? { code: x.code } : {}),
    ...(typeof x.status === 'number' ? { status: x.status } : {}),
    ...(typeof x.param === 'string' || x.param === null ? { param: x.param as string | null } : {}),
    ...(typeof x.field === 'string' ? { field: x.field } : {}),
  };
}
