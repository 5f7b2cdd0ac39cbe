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

import type { CausalLM } from '../models/causal-lm.js';
import { AdapterRegistry } from './adapters.js';
import { ALPACA_CHAT, type ChatTemplate } from './chat.js';
import { ModelDecodeEngine, type DecodeEngine } from './engine.js';
import { badRequest, ServeError } from './errors.js';
import { handleGeneration, type Tokenizer } from './generation.js';
import { ServerMetrics } from './metrics.js';
import { parseChat, parseCompletion } from './protocol.js';
import { Scheduler, type SchedulerOptions } from './scheduler.js';

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
  /** Default: ModelDecodeEngine over the model (any family on the shared decoder base). */
  engine?: DecodeEngine;
}

const ROUTES = ['/health', '/metrics', '/v1/models', '/v1/completions', '/v1/chat/completions', '/v1/load_lora_adapter', '/v1/unload_lora_adapter'] as const;

export class LoraServer {
  readonly scheduler: Scheduler;
  readonly adapters: AdapterRegistry;
  readonly metrics: ServerMetrics;
  readonly modelName: string;
  private readonly http: Server;
  private readonly keyDigest: Buffer | undefined;
  private readonly created = Math.floor(Date.now() / 1000);
  private draining = false;

  constructor(readonly model: CausalLM, private readonly o: ServeOptions) {
    this.modelName = o.modelName ?? model.source ?? 'base';
    const engine = o.engine ?? new ModelDecodeEngine(model);
    this.scheduler = new Scheduler(engine, {
      ...o.scheduler,
      observer: {
        firstToken: (ms) => this.metrics.ttft.observe(ms / 1000),
        interToken: (ms) => this.metrics.perToken.observe(ms / 1000),
        step: (_rows, _tokens, ms) => this.metrics.stepTime.observe(ms / 1000),
      },
    });
    this.adapters = new AdapterRegistry(model, this.modelName, { loaded: (lora) => engine.prepare?.(lora), disposing: (lora) => engine.forget?.(lora) });
    this.metrics = new ServerMetrics({
      queueDepth: () => this.scheduler.queueDepth,
      running: () => this.scheduler.runningRows,
      kvBytes: () => this.scheduler.kvBytesInUse,
      adapters: () => this.adapters.size,
    });
    this.keyDigest = o.apiKey ? digest(o.apiKey) : undefined;
    this.http = createHttpServer((req, res) => void this.handle(req, res));
    this.http.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  async listen(port = 8000, host = '127.0.0.1'): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => (this.http.off('error', reject), resolve()));
    });
    return this.http.address() as AddressInfo;
  }

  /** Stops accepting, lets every queued and running request finish, then closes (SIGTERM's path). */
  async close(): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((r) => this.http.close(() => r()));
    this.http.closeIdleConnections();
    await this.scheduler.drain();
    this.http.closeIdleConnections();
    await closed;
    this.adapters.dispose();
    this.scheduler.engine.dispose?.();
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
      res.writeHead(this.draining ? 503 : 200).end();
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
      else this.adapters.unload(b.lora_name);
      const verb = path === '/v1/load_lora_adapter' ? 'added' : 'removed';
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(`Success: LoRA adapter '${b.lora_name}' ${verb} successfully.`);
      return;
    }
    const limits = { maxTokensCap: this.o.maxTokensCap ?? 2048, vocabSize: this.scheduler.engine.vocabSize };
    const ctx = {
      scheduler: this.scheduler, tokenizer: this.o.tokenizer, chatTemplate: this.o.chatTemplate ?? ALPACA_CHAT, metrics: this.metrics,
      stallMs: this.o.stallTimeoutMs ?? 30_000,
      lease: (name: string) => (name === this.modelName ? undefined : this.adapters.acquire(name)),
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
    const maxLen = this.scheduler.engine.maxPositions;
    return [
      { id: this.modelName, object: 'model', created: this.created, owned_by: 'lora', root: this.model.source ?? this.modelName, parent: null, max_model_len: maxLen },
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

/** The SDK's entry point: a server for `model` (call listen(), and loadAdapter for --adapter NAME=DIR). */
export function createServer(model: CausalLM, opts: ServeOptions): LoraServer {
  return new LoraServer(model, opts);
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
