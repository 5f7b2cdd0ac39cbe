// What the HTTP side of `lora serve` asks of the side that runs the model: submit a request and get
// its tokens as they are sampled, cancel it, pause it (backpressure), manage adapters, drain, close.
// Two implementations: WorkerBackend (worker-backend.ts: the model, its scheduler and adapters in a
// worker thread; what `lora serve` runs) and InThreadBackend (in-thread.ts: an already-loaded model
// on this thread, cooperatively).
import type { FinishReason, SamplingParams } from './scheduler.js';

/** What the HTTP side needs to know of the loaded model. */
export interface ModelInfo {
  /** Where the model came from (the folder or hub id), when known. */
  source?: string;
  modelType: string;
  vocabSize: number;
  maxPositions: number;
}

export interface BackendRequest {
  prompt: readonly number[];
  /** An adapter's name; undefined: the base model. */
  adapter?: string;
  sampling: SamplingParams;
  /** Aborting cancels the request: it finishes 'cancelled' at once and its row is freed. */
  signal: AbortSignal;
  /** Each token in order as it is sampled; return false to stop (finish 'stop': a stop string matched). */
  onToken(id: number): boolean | void;
}

export interface BackendOutcome {
  /** The tokens onToken was given. */
  tokens: number[];
  finishReason: FinishReason;
  /** For 'error': what failed (a ServeError carries its own status and code). */
  error?: Error;
}

export interface RequestHandle {
  /** Resolves when the request ends; never rejects (failures are finish 'error'). */
  outcome: Promise<BackendOutcome>;
  /** The client cannot take more (its socket buffer is full): the row skips decode steps until resume(). */
  pause(): void;
  resume(): void;
}

/** The adapters a server serves, by name (vLLM's --lora-modules), loaded and unloaded at run time. */
export interface ServedAdapters {
  /** Loads a PEFT adapter folder under `name`; rejects with a ServeError (400) for a bad name or adapter. */
  load(name: string, path: string): Promise<void>;
  /** Removes it from new requests at once; its weights are freed when its last request ends (404 if unknown). */
  unload(name: string): Promise<void>;
  list(): { name: string; path: string; created: number }[];
  has(name: string): boolean;
  readonly size: number;
}

/** The running batch's counters, as /metrics shows them. */
export interface BatchCounters {
  /** Requests waiting for a row or KV room. */
  readonly queueDepth: number;
  /** Rows in the running batch. */
  readonly runningRows: number;
  /** Bytes the running requests' KV caches hold. */
  readonly kvBytesInUse: number;
  /** Requests queued or running (a cancelled one counts until its row is freed). */
  readonly inFlight: number;
}

export interface ModelBackend {
  /** Resolves once the model is loaded (rejects with the loading error, a LoraError). */
  ready(): Promise<ModelInfo>;
  /**
   * Starts a request. Throws a ServeError at once for one that cannot run: unknown adapter (404),
   * empty or too long a prompt or over the KV budget (400), a full queue (429), shutting down (503).
   */
  submit(req: BackendRequest): RequestHandle;
  readonly adapters: ServedAdapters;
  readonly counters: BatchCounters;
  /** Set once the backend can serve no more (its worker died); the reason. */
  readonly failure: Error | undefined;
  /** Cancels every queued and running request. */
  cancelAll(): void;
  /** Refuses new requests and resolves once every queued and running request has finished. */
  drain(): Promise<void>;
  /** Drains, then frees everything the backend holds (the worker's model, adapters, caches). */
  close(): Promise<void>;
}

/** Called for every model step (rows in it, tokens it ran, its duration). */
export type StepObserver = (rows: number, tokens: number, ms: number) => void;
