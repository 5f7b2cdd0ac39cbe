// Continuous batching over a DecodeEngine. Requests wait in a bounded FIFO queue, are admitted into
// the running batch while the batch has a free row and the KV budget has room for the request's
// whole cache (prompt + max_tokens), and leave it the moment they finish or are cancelled. Each
// iteration is one engine.forward: every decoding row brings its last token, and at most one
// prefilling request brings one chunk of its prompt, so a new request stalls the others by one
// chunk at most. Between iterations the loop yields to its thread's event loop (setImmediate).
//
// `lora serve` runs it in the model's worker thread (worker-main.ts), where nothing else waits on
// that event loop. In the main thread (the in-thread path, in-thread.ts) it also yields after every
// layer (layerYield), so accepting, streaming and cancelling wait one layer at most; a cancelled
// row is freed in its abort handler (after the paused step, which still holds its cache).
import { seededRandom } from '../data/split.js';
import { sampleToken } from '../model/generate.js';
import type { DecodeEngine, ForwardRow, KvCache } from './engine.js';
import { ServeError } from './errors.js';

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  maxTokens: number;
  /** Generation stops after any of these (default: the model's eos). */
  stopTokenIds?: readonly number[];
}

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

export interface GenerationOutcome {
  tokens: number[];
  finishReason: FinishReason;
  /** Prefill + first sample, from admission into the batch... and from submit (queueing included). */
  timeToFirstTokenMs: number;
  queuedMs: number;
  totalMs: number;
  error?: Error;
}

/** What a running row needs of its adapter: its weights, and a release when the request is done. */
export interface AdapterLease {
  readonly lora: import('../model/lora.js').LoraAdapter;
  release(): void;
}

export interface GenerationRequest {
  prompt: readonly number[];
  sampling: SamplingParams;
  adapter?: AdapterLease;
  signal?: AbortSignal;
  /** False while the client cannot take more (a full socket buffer): the row skips decode steps. */
  ready?: () => boolean;
  /** Each new token as it is sampled; return false to stop (finish 'stop', e.g. a stop string matched). */
  onToken?: (id: number) => boolean | void;
}

export interface SchedulerOptions {
  /** Rows in the running batch (default 16). */
  maxBatch?: number;
  /** Requests waiting beyond the running batch; more are refused with 429 (default 64). */
  maxQueue?: number;
  /** Prompt tokens per prefill step (default 64). */
  prefillChunk?: number;
  /** Bytes all running requests' KV caches may hold together (default 1 GiB). */
  kvBudgetBytes?: number;
  /** Yield to the event loop after every layer of a step, not only between steps (default true). */
  layerYield?: boolean;
  observer?: SchedulerObserver;
}

export interface SchedulerObserver {
  firstToken?(ms: number): void;
  interToken?(ms: number): void;
  step?(rows: number, tokens: number, ms: number): void;
}

interface Entry {
  req: GenerationRequest;
  submitted: number;
  admitted: number;
  lastTokenAt: number;
  cache?: KvCache;
  capacity: number;
  fed: number;
  tokens: number[];
  rand: () => number;
  stop: Set<number>;
  done: boolean;
  resolve: (o: GenerationOutcome) => void;
  ttft: number;
  detach?: () => void;
}

const tick = () => new Promise<void>((r) => setImmediate(r));
const pause = () => new Promise<void>((r) => setTimeout(r, 2));

export class Scheduler {
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly prefillChunk: number;
  readonly kvBudgetBytes: number;
  private readonly queue: Entry[] = [];
  private readonly running: Entry[] = [];
  private kvInUse = 0;
  private looping = false;
  private stepping = false;
  private deferred: (() => void)[] = [];
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly engine: DecodeEngine, private readonly o: SchedulerOptions = {}) {
    this.maxBatch = positive(o.maxBatch ?? 16, 'maxBatch');
    this.maxQueue = Math.max(0, Math.floor(o.maxQueue ?? 64));
    this.prefillChunk = positive(o.prefillChunk ?? 64, 'prefillChunk');
    this.kvBudgetBytes = o.kvBudgetBytes ?? 2 ** 30;
  }

  get queueDepth(): number {
    return this.queue.length;
  }
  get runningRows(): number {
    return this.running.length;
  }
  get kvBytesInUse(): number {
    return this.kvInUse;
  }
  /** Requests queued or running. */
  get inFlight(): number {
    return this.queue.length + this.running.length;
  }

  /**
   * Queues a request; resolves when it finishes (never rejects: failures come back as finish
   * 'error'). Throws a ServeError at once when the queue is full or the request can never fit.
   */
  submit(req: GenerationRequest): Promise<GenerationOutcome> {
    if (this.closed) throw new ServeError(503, 'server_shutting_down', 'the server is shutting down');
    const e = this.engine;
    const capacity = requestCapacity(e, this.kvBudgetBytes, req.prompt.length, req.sampling.maxTokens);
    if (this.queue.length >= this.maxQueue && !this.canAdmit(capacity)) throw queueFull(this.running.length, this.queue.length);
    return new Promise<GenerationOutcome>((resolve) => {
      const now = performance.now();
      const entry: Entry = {
        req, submitted: now, admitted: 0, lastTokenAt: 0, capacity, fed: 0, tokens: [], rand: seededRandom(req.sampling.seed),
        stop: new Set(req.sampling.stopTokenIds ?? e.eosTokenIds ?? [e.eosTokenId]), done: false, resolve, ttft: 0,
      };
      if (req.signal) {
        if (req.signal.aborted) return this.finish(entry, 'cancelled');
        const onAbort = () => this.finish(entry, 'cancelled');
        req.signal.addEventListener('abort', onAbort, { once: true });
        entry.detach = () => req.signal!.removeEventListener('abort', onAbort);
      }
      this.queue.push(entry);
      // Not synchronously: the caller sets up its response (SSE headers) before the first token.
      queueMicrotask(() => void this.loop());
    });
  }

  /** Refuses new requests and resolves once every queued and running request has finished. */
  async drain(): Promise<void> {
    this.closed = true;
    if (!this.inFlight) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  /** Cancels everything (queued and running) at once. */
  cancelAll(): void {
    for (const e of [...this.queue, ...this.running]) this.finish(e, 'cancelled');
  }

  private canAdmit(capacity: number): boolean {
    return hasRoom(this, this.running.length, this.kvInUse, this.engine.kvBytes(capacity));
  }

  private admit(): void {
    while (this.queue.length && this.canAdmit(this.queue[0].capacity)) {
      const entry = this.queue.shift()!;
      try {
        entry.cache = this.engine.allocate(entry.capacity);
      } catch (err) {
        this.finish(entry, 'error', err as Error);
        continue;
      }
      this.kvInUse += entry.cache.bytes;
      entry.admitted = performance.now();
      this.running.push(entry);
    }
  }

  private async loop(): Promise<void> {
    if (this.looping) return;
    this.looping = true;
    try {
      while (this.queue.length || this.running.length) {
        this.admit();
        const batch: Entry[] = [];
        const rows: ForwardRow[] = [];
        const prefilling = this.running.find((x) => x.fed < x.req.prompt.length);
        if (prefilling) {
          const chunk = prefilling.req.prompt.slice(prefilling.fed, prefilling.fed + this.prefillChunk);
          prefilling.fed += chunk.length;
          batch.push(prefilling);
          rows.push({ cache: prefilling.cache!, ids: chunk, adapter: prefilling.req.adapter?.lora, wantLogits: prefilling.fed === prefilling.req.prompt.length });
        }
        for (const x of this.running) {
          if (x.fed < x.req.prompt.length || !x.tokens.length || (x.req.ready && !x.req.ready())) continue;
          batch.push(x);
          rows.push({ cache: x.cache!, ids: [x.tokens.at(-1)!], adapter: x.req.adapter?.lora, wantLogits: true });
        }
        if (rows.length) {
          await this.step(batch, rows);
          await tick();
        } else {
          await pause(); // every row waits for its client (or for KV room): do not spin
        }
      }
    } finally {
      this.looping = false;
      if (!this.inFlight) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async step(batch: Entry[], rows: ForwardRow[]): Promise<void> {
    const t0 = performance.now();
    let logits: (Float32Array | undefined)[];
    this.stepping = true;
    try {
      if (this.engine.forwardSteps && this.o.layerYield !== false) {
        // One layer at a time, with the event loop served between layers.
        const steps = this.engine.forwardSteps(rows);
        for (let r = steps.next(); ; r = steps.next()) {
          if (r.done) {
            logits = r.value;
            break;
          }
          await tick();
        }
      } else {
        logits = this.engine.forward(rows);
      }
    } catch (err) {
      // A failed step fails the requests in it, not the server; their caches are freed.
      this.endStep();
      for (const x of batch) this.finish(x, 'error', err as Error);
      return;
    }
    this.endStep();
    const now = performance.now();
    this.o.observer?.step?.(rows.length, rows.reduce((a, r) => a + r.ids.length, 0), now - t0);
    batch.forEach((x, j) => {
      const l = logits[j];
      if (!l || x.done) return;
      for (let i = 0; i < l.length; i++) {
        if (!Number.isFinite(l[i])) return this.finish(x, 'error', new Error(`the model produced a non-finite logit (${l[i]} for token ${i}) at position ${x.cache!.past - 1}`));
      }
      const s = x.req.sampling;
      const id = sampleToken(l, { temperature: s.temperature, topP: s.topP, topK: s.topK }, x.rand);
      x.tokens.push(id);
      if (x.tokens.length === 1) {
        x.ttft = now - x.submitted;
        this.o.observer?.firstToken?.(x.ttft);
      } else {
        this.o.observer?.interToken?.(now - x.lastTokenAt);
      }
      x.lastTokenAt = now;
      let keepGoing: boolean | void = true;
      try {
        keepGoing = x.req.onToken?.(id);
      } catch (err) {
        return this.finish(x, 'error', err as Error);
      }
      if (x.done) return; // the callback cancelled it
      if (keepGoing === false || x.stop.has(id)) return this.finish(x, 'stop');
      if (x.tokens.length >= s.maxTokens || x.cache!.past >= x.capacity) return this.finish(x, 'length');
    });
  }

  /** The step is over: free what requests finished during it still lent to it. */
  private endStep(): void {
    this.stepping = false;
    for (const release of this.deferred.splice(0)) release();
  }

  private finish(x: Entry, reason: FinishReason, error?: Error): void {
    if (x.done) return;
    x.done = true;
    x.detach?.();
    const qi = this.queue.indexOf(x);
    if (qi >= 0) this.queue.splice(qi, 1);
    const ri = this.running.indexOf(x);
    if (ri >= 0) this.running.splice(ri, 1);
    const cache = x.cache;
    x.cache = undefined;
    const release = () => {
      if (cache) {
        this.kvInUse -= cache.bytes;
        cache.dispose();
      }
      x.req.adapter?.release();
    };
    // A request cancelled while a step is paused between layers answers now; its cache and adapter
    // are still in that step's hands until it ends.
    if (this.stepping && ri >= 0) this.deferred.push(release);
    else release();
    const now = performance.now();
    x.resolve({
      tokens: x.tokens, finishReason: reason, timeToFirstTokenMs: x.ttft, queuedMs: (x.admitted || now) - x.submitted, totalMs: now - x.submitted,
      ...(error ? { error } : {}),
    });
    if (!this.looping && !this.inFlight) for (const w of this.idleWaiters.splice(0)) w();
  }
}

/**
 * The positions a request's KV cache needs (prompt + max_tokens, capped by the model's context);
 * throws the 400 for a request that can never run (empty, too long, over the KV budget alone).
 */
export function requestCapacity(
  e: { maxPositions: number; kvBytes(capacity: number): number }, kvBudgetBytes: number, promptLength: number, maxTokens: number,
): number {
  if (promptLength < 1) throw new ServeError(400, 'invalid_prompt', 'the prompt is empty');
  if (promptLength > e.maxPositions) {
    throw new ServeError(400, 'context_length_exceeded', `the prompt has ${promptLength} tokens; this model's context is ${e.maxPositions}`);
  }
  const capacity = Math.min(e.maxPositions, promptLength + maxTokens);
  if (e.kvBytes(capacity) > kvBudgetBytes) {
    throw new ServeError(400, 'kv_budget_exceeded', `prompt + max_tokens (${capacity} positions) needs ${e.kvBytes(capacity)} bytes of KV cache; the server's budget is ${kvBudgetBytes}`);
  }
  return capacity;
}

/**
 * The admission rule: a request joins the running batch while a row is free and its KV cache fits
 * the budget. The scheduler and the main thread's Admission (admission.ts) keep their books by it.
 */
export function hasRoom(limits: { maxBatch: number; kvBudgetBytes: number }, runningRows: number, kvInUse: number, kvBytes: number): boolean {
  return runningRows < limits.maxBatch && kvInUse + kvBytes <= limits.kvBudgetBytes;
}

export const queueFull = (running: number, queued: number) =>
  new ServeError(429, 'queue_full', `the server is at capacity (${running} running, ${queued} queued); retry later`);

/** A positive integer setting, or a 500 invalid_config naming it. */
export function positive(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new ServeError(500, 'invalid_config', `${name} must be a positive integer, got ${v}`);
  return v;
}
