// `lora serve`: an OpenAI-compatible HTTP server as vLLM serves one (its endpoints, shapes, the
// --lora-modules convention and the runtime adapter API), over the continuous-batching scheduler.
//
// Built on node:http, not a framework: it adds no dependency, and the server needs full control of
// the few things a framework would hide — writing each SSE chunk as a token arrives, seeing a full
// socket buffer (backpressure pauses the row) and a closed connection (cancels the row) at once, and
// a body limit applied while reading.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { CausalLM, LoadOptions } from '../models/causal-lm.js';
import { LoraError } from '../io/errors.js';
import type { BatchCounters, ModelBackend, ModelInfo, ServedAdapters, StepObserver } from './backend.js';
import { ALPACA_CHAT, type ChatTemplate } from './chat.js';
import type { DecodeEngine, EngineOptions } from './engine.js';
import { badRequest, ServeError } from './errors.js';
import { handleGeneration, type Tokenizer } from './generation.js';
import { InThreadBackend } from './in-thread.js';
import { ServerMetrics } from './metrics.js';
import { parseChat, parseCompletion } from './protocol.js';
import { positive, type SchedulerOptions } from './scheduler.js';
import { WorkerBackend } from './worker-backend.js';

/**
 * A model to load in the server's worker thread: a folder or hub id, and the load options
 * AutoModelForCausalLM.fromPretrained takes (callbacks cannot cross threads, so no onProgress).
 */
export interface ModelSource extends Pick<LoadOptions, 'device' | 'dtype' | 'packWeights' | 'cacheDir' | 'revision'> {
  model: string;
}

export interface ServeOptions {
  tokenizer: Tokenizer;
  /** The base model's name in /v1/models and requests (default: the model's source, else 'base'). */
  modelName?: string;
  /** Default: the Alpaca rule (chat.ts); loadChatTemplate(dir) reads a model folder's. */
  chatTemplate?: ChatTemplate;
  /** Bearer key every /v1 request must carry (compared in constant time). */
  apiKey?: string;
  /** Request body limit (default 1 MiB); larger bodies get 413. */
  maxBodyBytes?: number;
  /** The largest max_tokens accepted (default 2048). */
  maxTokensCap?: number;
  /** Whether POST /v1/load_lora_adapter and /v1/unload_lora_adapter are served (default true). */
  runtimeAdapters?: boolean;
  /** A stream whose client reads nothing for this long (its socket buffer full) is cancelled (default 30 s). */
  stallTimeoutMs?: number;
  /** Seconds a 429 asks the client to wait (default 1). */
  retryAfterSec?: number;
  scheduler?: SchedulerOptions;
  engineOptions?: EngineOptions;
  /** A custom engine (tests): only with a loaded model, which runs in this thread. */
  engine?: DecodeEngine;
  /** Called after every model step with its rows, tokens and duration (also in /metrics' lora_model_step_seconds). */
  onStep?: StepObserver;
  /**
   * When the model worker dies, start a new one (reloading the served adapters) so the server
   * recovers from 503 (default true; at most 3 restarts a minute, then it stays down).
   */
  restartWorker?: boolean;
}

const ROUTES = ['/health', '/metrics', '/v1/models', '/v1/completions', '/v1/chat/completions', '/v1/load_lora_adapter', '/v1/unload_lora_adapter'] as const;

const RESTARTS_PER_MINUTE = 3;

export class LoraServer {
  /** The model's side: a WorkerBackend (replaced by a new one if its worker dies) or an InThreadBackend. */
  backend: ModelBackend;
  readonly metrics: ServerMetrics;
  readonly modelName: string;
  private readonly http: Server;
  private readonly keyDigest: Buffer | undefined;
  private readonly created = Math.floor(Date.now() / 1000);
  private draining = false;
  private info?: ModelInfo;
  private startWorker?: () => WorkerBackend;
  private restarts: number[] = [];
  private restarting: Promise<void> = Promise.resolve();

  constructor(model: CausalLM | ModelSource | string, private readonly o: ServeOptions) {
    const onStep: StepObserver = (rows, tokens, ms) => {
      this.metrics.stepTime.observe(ms / 1000);
      o.onStep?.(rows, tokens, ms);
    };
    if (typeof model === 'string' || isModelSource(model)) {
      const { model: source, ...load } = typeof model === 'string' ? { model } : model;
      if (o.engine) throw new LoraError('E_CONFIG', 'a custom engine runs in this thread: pass a loaded model to createServer, not a model source');
      this.modelName = o.modelName ?? source;
      const sc = o.scheduler ?? {};
      // Checked here, not in the worker, so a bad setting fails createServer rather than the load.
      const scheduler = { maxBatch: positive(sc.maxBatch ?? 16, 'maxBatch'), prefillChunk: positive(sc.prefillChunk ?? 64, 'prefillChunk'), kvBudgetBytes: sc.kvBudgetBytes ?? 2 ** 30 };
      const init = { source, load, baseName: this.modelName, engine: o.engineOptions ?? {}, scheduler };
      const maxQueue = Math.max(0, Math.floor(sc.maxQueue ?? 64));
      this.startWorker = () => new WorkerBackend(init, { maxQueue, onStep, onFailure: () => this.restart() });
      this.backend = this.startWorker();
    } else {
      this.modelName = o.modelName ?? model.source ?? 'base';
      this.backend = new InThreadBackend(model, { baseName: this.modelName, scheduler: o.scheduler, engine: o.engine, engineOptions: o.engineOptions, onStep });
    }
    const counters = () => this.backend.counters;
    this.metrics = new ServerMetrics({
      queueDepth: () => counters().queueDepth,
      running: () => counters().runningRows,
      kvBytes: () => counters().kvBytesInUse,
      adapters: () => this.backend.adapters.size,
    });
    this.keyDigest = o.apiKey ? digest(o.apiKey) : undefined;
    this.http = createHttpServer((req, res) => void this.handle(req, res));
    this.http.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  /** The running batch's counters (queue depth, running rows, KV bytes, requests in flight). */
  get scheduler(): BatchCounters & { cancelAll(): void } {
    const c = this.backend.counters;
    return { queueDepth: c.queueDepth, runningRows: c.runningRows, kvBytesInUse: c.kvBytesInUse, inFlight: c.inFlight, cancelAll: () => this.backend.cancelAll() };
  }

  /** The served adapters (load/unload at run time). */
  get adapters(): ServedAdapters {
    return this.backend.adapters;
  }

  /** Resolves once the model is loaded; rejects with the loading error (a LoraError with its code). */
  async ready(): Promise<void> {
    this.info ??= await this.backend.ready();
  }

  async listen(port = 8000, host = '127.0.0.1'): Promise<AddressInfo> {
    await this.ready();
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => (this.http.off('error', reject), resolve()));
    });
    return this.http.address() as AddressInfo;
  }

  /**
   * The worker died: its requests have failed (500) and it answers 503. A new worker loads the model
   * and the adapters served at the time, then takes over; a crash loop (over 3 a minute) stays down.
   */
  private restart(): void {
    const failed = this.backend;
    if (!this.startWorker || this.o.restartWorker === false || this.draining || !this.info) return;
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < 60_000);
    if (this.restarts.length >= RESTARTS_PER_MINUTE) return;
    this.restarts.push(now);
    this.metrics.workerRestarts.inc();
    const next = this.startWorker();
    this.restarting = (async () => {
      try {
        await next.ready();
        // An adapter whose folder is gone now is dropped (it would answer 404), not the restart.
        for (const a of failed.adapters.list()) await next.adapters.load(a.name, a.path).catch(() => {});
      } catch {
        await next.close(); // could not load the model again: stay down (503)
        return;
      }
      if (this.draining) await next.close();
      else this.backend = next;
    })();
  }

  /** Stops accepting, lets every queued and running request finish, then closes and frees the model's side. */
  async close(): Promise<void> {
    this.draining = true;
    await this.restarting;
    const closed = this.http.listening ? new Promise<void>((r) => this.http.close(() => r())) : Promise.resolve();
    this.http.closeIdleConnections();
    await this.backend.drain();
    this.http.closeIdleConnections();
    await closed;
    await this.backend.close();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const endpoint = (ROUTES as readonly string[]).includes(path) ? path : 'other';
    res.on('close', () => this.metrics.requests.inc({ endpoint, status: res.writableFinished ? String(res.statusCode) : '499' }));
    try {
      await this.route(path, req, res);
    } catch (e) {
      const err = e instanceof ServeError ? e : new ServeError(500, 'internal_error', `internal error: ${e instanceof Error ? e.message : String(e)}`);
      if (res.headersSent) {
        if (!res.writableEnded) res.end();
        return;
      }
      const json = JSON.stringify(err.toJSON());
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) };
      if (err.retryAfter !== undefined) headers['retry-after'] = err.retryAfter;
      if (err.status === 401) headers['www-authenticate'] = 'Bearer';
      if (err.status === 413) headers.connection = 'close';
      res.writeHead(err.status, headers);
      res.end(json);
    }
  }

  private async route(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const allow = (m: string) => {
      if (method !== m) throw new ServeError(405, 'method_not_allowed', `${path} takes ${m}, not ${method}`);
    };
    if (path === '/health') {
      allow('GET');
      res.writeHead(this.draining || this.backend.failure ? 503 : 200).end();
      return;
    }
    if (path === '/metrics') {
      allow('GET');
      const text = this.metrics.render();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text);
      return;
    }
    if (!path.startsWith('/v1/') || !(ROUTES as readonly string[]).includes(path)) throw new ServeError(404, 'not_found', `no route ${method} ${path}`);
    this.authorize(req);
    if (path === '/v1/models') {
      allow('GET');
      return sendJson(res, 200, { object: 'list', data: this.models() });
    }
    allow('POST');
    if (this.draining) throw new ServeError(503, 'server_shutting_down', 'the server is shutting down', null, this.o.retryAfterSec ?? 1);
    const body = await readJson(req, this.o.maxBodyBytes ?? 1 << 20);
    if (path === '/v1/load_lora_adapter' || path === '/v1/unload_lora_adapter') {
      if (this.o.runtimeAdapters === false) throw new ServeError(404, 'not_found', 'runtime adapter loading is disabled on this server');
      const b = (body ?? {}) as { lora_name?: unknown; lora_path?: unknown };
      if (typeof b.lora_name !== 'string') throw badRequest('lora_name is required', 'lora_name', 'missing_required_parameter');
      if (path === '/v1/load_lora_adapter') await this.adapters.load(b.lora_name, b.lora_path as string);
      else await this.adapters.unload(b.lora_name);
      const verb = path === '/v1/load_lora_adapter' ? 'added' : 'removed';
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(`Success: LoRA adapter '${b.lora_name}' ${verb} successfully.`);
      return;
    }
    const info = this.info!;
    const limits = { maxTokensCap: this.o.maxTokensCap ?? 2048, vocabSize: info.vocabSize };
    const ctx = {
      backend: this.backend, baseName: this.modelName, tokenizer: this.o.tokenizer, chatTemplate: this.o.chatTemplate ?? ALPACA_CHAT, metrics: this.metrics,
      stallMs: this.o.stallTimeoutMs ?? 30_000,
    };
    try {
      if (path === '/v1/completions') await handleGeneration(ctx, 'completion', parseCompletion(body, limits), res);
      else await handleGeneration(ctx, 'chat', parseChat(body, limits), res);
    } catch (e) {
      if (e instanceof ServeError && e.status === 429 && e.retryAfter === undefined) {
        throw new ServeError(429, e.code, e.message, e.param, this.o.retryAfterSec ?? 1);
      }
      throw e;
    }
  }

  private models(): Record<string, unknown>[] {
    const maxLen = this.info!.maxPositions;
    return [
      { id: this.modelName, object: 'model', created: this.created, owned_by: 'lora', root: this.info!.source ?? this.modelName, parent: null, max_model_len: maxLen },
      ...this.adapters.list().map((a) => ({ id: a.name, object: 'model', created: a.created, owned_by: 'lora', root: a.path, parent: this.modelName, max_model_len: maxLen })),
    ];
  }

  private authorize(req: IncomingMessage): void {
    if (!this.keyDigest) return;
    const h = req.headers.authorization ?? '';
    const given = h.startsWith('Bearer ') ? h.slice(7) : '';
    // Digests of equal length, so the comparison takes the same time whatever was sent.
    if (!timingSafeEqual(digest(given), this.keyDigest)) throw new ServeError(401, 'invalid_api_key', 'missing or incorrect API key (send Authorization: Bearer KEY)');
  }
}

/**
 * The SDK's entry point. Given a model source (a folder or hub id, or { model, dtype, device, ... }),
 * the model is loaded in a worker thread that runs every model step, so this thread's event loop
 * (HTTP, streaming, cancels) never waits for one; `lora serve` does this. Given an already-loaded
 * model, it is stepped on this thread cooperatively (one layer at a time; see serve/README.md).
 * Then: `await server.adapters.load(name, dir)` for each adapter, `await server.listen(port)`.
 */
export function createServer(model: CausalLM | ModelSource | string, opts: ServeOptions): LoraServer {
  return new LoraServer(model, opts);
}

function isModelSource(m: CausalLM | ModelSource): m is ModelSource {
  return typeof (m as ModelSource).model === 'string' && typeof (m as CausalLM).generate !== 'function';
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    throw new ServeError(413, 'request_too_large', `the request body is ${declared} bytes; the limit is ${limit}`);
  }
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return; // read and dropped, so the 413 can still be answered on this connection
      size += c.length;
      if (size > limit) {
        over = true;
        reject(new ServeError(413, 'request_too_large', `the request body exceeds the limit of ${limit} bytes`));
      } else {
        chunks.push(c);
      }
    });
    req.on('end', () => resolve());
    req.on('error', reject);
  });
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, null, 'invalid_json');
  }
}
