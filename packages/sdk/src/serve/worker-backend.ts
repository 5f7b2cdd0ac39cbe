// The main thread's side of the model worker (worker-main.ts): requests go to the worker as messages,
// tokens come back one message per model step, so the main thread's event loop — HTTP, streaming,
// cancels — never waits for a step. Admission (429) is decided here (admission.ts); a cancel or a
// stop string ends the request here at once and tells the worker, which frees the row between steps.
// If the worker dies, every request in it fails with a 500 and this backend answers 503 from then on
// (the server starts a new one); the main process lives on.
import type { Worker } from 'node:worker_threads';

import { LoraError, type LoraErrorCode } from '../io/errors.js';
import { Admission } from './admission.js';
import type { BackendOutcome, BackendRequest, BatchCounters, ModelBackend, ModelInfo, RequestHandle, ServedAdapters, StepObserver } from './backend.js';
import { ServeError } from './errors.js';
import type { FinishReason } from './scheduler.js';
import { startModelWorker } from './worker-script.js';
import type { FromWorker, ToWorker, WireError, WorkerCounters, WorkerEvent, WorkerInit } from './worker-protocol.js';

export interface WorkerBackendOptions {
  maxQueue: number;
  onStep?: StepObserver;
  /** The worker died (after its requests were failed); not called for a clean close. */
  onFailure?: (e: Error) => void;
}

interface Pending {
  tokens: number[];
  req: BackendRequest;
  ended: boolean;
  paused: boolean;
  resolve(o: BackendOutcome): void;
}

export class WorkerBackend implements ModelBackend {
  readonly worker: Worker;
  readonly adapters: ServedAdapters;
  private readonly started: Promise<ModelInfo>;
  private admission?: Admission;
  private readonly pending = new Map<number, Pending>();
  private readonly replies = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private readonly served = new Map<string, { name: string; path: string; created: number }>();
  private counts: WorkerCounters = { queueDepth: 0, runningRows: 0, kvBytesInUse: 0 };
  private nextId = 0;
  private closing = false;
  private exited = false;
  private failed?: Error;
  private idleWaiters: (() => void)[] = [];
  private readonly exit: Promise<void>;
  /** Rejects ready() (a no-op once it settled). */
  private readonly notReady: (e: Error) => void;

  constructor(private readonly init: WorkerInit, private readonly o: WorkerBackendOptions) {
    this.worker = startModelWorker(init);
    let ready: (i: ModelInfo) => void;
    let notReady: (e: Error) => void;
    this.started = new Promise<ModelInfo>((res, rej) => ((ready = res), (notReady = rej)));
    this.notReady = (e) => notReady(new LoraError('E_WORKER', `the model worker failed before ${init.source} was loaded: ${e.message}`, { cause: e }));
    this.started.catch(() => {}); // a caller that never awaits ready() must not see an unhandled rejection
    this.worker.on('message', (m: FromWorker) => {
      if (m.t === 'ready') {
        const { kvBytesPerPosition, ...info } = m.info;
        this.admission = new Admission({ ...init.scheduler, maxQueue: o.maxQueue, maxPositions: info.maxPositions, kvBytesPerPosition });
        ready(info);
      } else if (m.t === 'load-failed') {
        this.failed = loadError(m.error);
        notReady(this.failed);
      } else if (m.t === 'events') {
        this.counts = m.counters;
        for (const e of m.events) this.handle(e);
        this.checkIdle();
      }
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('messageerror', (e) => this.fail(e));
    this.exit = new Promise<void>((resolve) => {
      this.worker.once('exit', (code) => {
        this.exited = true;
        if (!this.closing || this.pending.size) this.fail(new Error(`the model worker exited (code ${code})`));
        resolve();
      });
    });
    const self = this;
    this.adapters = {
      load: async (name, path) => {
        await self.ready();
        await self.request({ t: 'load', rid: 0, name, path });
        self.served.set(name, { name, path, created: Math.floor(Date.now() / 1000) });
      },
      unload: async (name) => {
        await self.ready();
        if (!self.served.has(name)) throw new ServeError(404, 'adapter_not_found', `no adapter named '${name}' is loaded`, 'lora_name');
        self.served.delete(name); // gone for new requests at once; the worker frees it after its last request
        await self.request({ t: 'unload', rid: 0, name });
      },
      list: () => [...self.served.values()],
      has: (name) => self.served.has(name),
      get size() {
        return self.served.size;
      },
    };
  }

  ready(): Promise<ModelInfo> {
    return this.started;
  }

  get failure(): Error | undefined {
    return this.failed;
  }

  get counters(): BatchCounters {
    const c = this.counts;
    const inFlight = this.admission?.size ?? 0;
    return { queueDepth: c.queueDepth, runningRows: c.runningRows, kvBytesInUse: c.kvBytesInUse, inFlight };
  }

  submit(req: BackendRequest): RequestHandle {
    if (this.failed) throw new ServeError(503, 'model_unavailable', `the model is unavailable: ${this.failed.message}`);
    if (this.closing) throw new ServeError(503, 'server_shutting_down', 'the server is shutting down');
    if (!this.admission) throw new ServeError(503, 'model_loading', 'the model is still loading');
    if (req.adapter !== undefined && !this.served.has(req.adapter)) throw new ServeError(404, 'model_not_found', `the model '${req.adapter}' does not exist`, 'model');
    const id = ++this.nextId;
    this.admission.enter(id, req.prompt.length, req.sampling.maxTokens);
    let resolve!: (o: BackendOutcome) => void;
    const outcome = new Promise<BackendOutcome>((r) => (resolve = r));
    const p: Pending = { tokens: [], req, ended: false, paused: false, resolve };
    this.pending.set(id, p);
    this.post({ t: 'submit', id, prompt: [...req.prompt], ...(req.adapter !== undefined ? { adapter: req.adapter } : {}), sampling: req.sampling });
    const onAbort = () => this.stop(id, 'cancelled');
    if (req.signal.aborted) onAbort();
    else req.signal.addEventListener('abort', onAbort, { once: true });
    void outcome.then(() => req.signal.removeEventListener('abort', onAbort));
    const toggle = (pause: boolean) => {
      if (p.ended || p.paused === pause) return;
      p.paused = pause;
      this.post({ t: pause ? 'pause' : 'resume', id });
    };
    return { outcome, pause: () => toggle(true), resume: () => toggle(false) };
  }

  cancelAll(): void {
    for (const [id, p] of this.pending) if (!p.ended) this.end(id, p, 'cancelled');
    this.post({ t: 'cancel-all' });
  }

  async drain(): Promise<void> {
    this.closing = true;
    await this.started.catch(() => {});
    while (!this.idle()) await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  async close(): Promise<void> {
    await this.drain();
    if (!this.exited) {
      this.post({ t: 'close' });
      // The worker frees the model and exits; one that does not within 30 s is terminated.
      const timer = setTimeout(() => void this.worker.terminate(), 30_000);
      await this.exit;
      clearTimeout(timer);
    }
  }

  private idle(): boolean {
    return this.exited || (this.pending.size === 0 && (this.admission?.size ?? 0) === 0);
  }

  private checkIdle(): void {
    if (this.idle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  private post(m: ToWorker): void {
    if (!this.exited) this.worker.postMessage(m);
  }

  private request(m: Extract<ToWorker, { rid: number }>): Promise<void> {
    if (this.failed) return Promise.reject(new ServeError(503, 'model_unavailable', `the model is unavailable: ${this.failed.message}`));
    const rid = ++this.nextId;
    return new Promise<void>((resolve, reject) => {
      this.replies.set(rid, { resolve, reject });
      this.post({ ...m, rid });
    });
  }

  private handle(e: WorkerEvent): void {
    if (e.t === 'tokens') {
      for (let i = 0; i < e.pairs.length; i += 2) {
        const id = e.pairs[i];
        const p = this.pending.get(id);
        if (!p || p.ended) continue; // ended here already (cancel, stop string): the rest is dropped
        p.tokens.push(e.pairs[i + 1]);
        let more: boolean | void;
        try {
          more = p.req.onToken(e.pairs[i + 1]);
        } catch (err) {
          this.stop(id, 'error', err as Error);
          continue;
        }
        if (more === false) this.stop(id, 'stop');
      }
    } else if (e.t === 'done') {
      this.admission?.leave(e.id);
      const p = this.pending.get(e.id);
      if (p && !p.ended) this.end(e.id, p, e.finishReason, e.error && serveError(e.error));
      this.pending.delete(e.id);
    } else if (e.t === 'step') {
      this.o.onStep?.(e.rows, e.tokens, e.ms);
    } else if (e.t === 'reply') {
      const r = this.replies.get(e.rid);
      this.replies.delete(e.rid);
      if (e.error) r?.reject(serveError(e.error));
      else r?.resolve();
    }
  }

  /** Ends a request here now and tells the worker to free its row. */
  private stop(id: number, reason: FinishReason, error?: Error): void {
    const p = this.pending.get(id);
    if (!p || p.ended) return;
    this.end(id, p, reason, error);
    this.post({ t: 'cancel', id });
  }

  private end(id: number, p: Pending, finishReason: FinishReason, error?: Error): void {
    p.ended = true;
    p.resolve({ tokens: p.tokens, finishReason, ...(error ? { error } : {}) });
    // Kept until the worker's 'done' (admission needs it); a dead worker sends none.
    if (this.exited || this.failed) this.pending.delete(id);
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    this.notReady(e);
    const err = new ServeError(500, 'model_worker_failed', `the model worker failed: ${e.message}`);
    for (const [id, p] of this.pending) if (!p.ended) this.end(id, p, 'error', err);
    this.pending.clear();
    for (const r of this.replies.values()) r.reject(err);
    this.replies.clear();
    this.admission?.clear();
    this.counts = { queueDepth: 0, runningRows: 0, kvBytesInUse: 0 };
    if (!this.exited) void this.worker.terminate();
    this.checkIdle();
    this.o.onFailure?.(e);
  }
}

/** A worker's error as the HTTP side answers it: a ServeError keeps its status; others are 500s. */
function serveError(w: WireError): Error {
  if (w.status !== undefined && w.code) return new ServeError(w.status, w.code, w.message, w.param ?? null);
  return new ServeError(500, 'generation_failed', `generation failed: ${w.message}`);
}

/** A loading error as the caller would have got it in-process: a LoraError with its code, or an Error with its. */
function loadError(w: WireError): Error {
  if (w.name === 'LoraError' && w.code) return new LoraError(w.code as LoraErrorCode, w.message, w.field ? { field: w.field } : undefined);
  const e = new Error(w.message) as Error & { code?: string };
  e.name = w.name ?? 'Error';
  if (w.code) e.code = w.code;
  return e;
}
