// /v1/completions and /v1/chat/completions: a validated request → tokens → the scheduler, and the
// outcome → OpenAI's response shapes (streamed as SSE chunks or one JSON body).
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';

import type { ModelBackend } from './backend.js';
import type { ChatTemplate } from './chat.js';
import { ServeError } from './errors.js';
import type { ServerMetrics } from './metrics.js';
import type { ChatParams, CompletionParams } from './protocol.js';
import { endEventStream, sendEvent, startEventStream, streamReady } from './sse.js';
import { TextStream, type Detokenizer } from './text-stream.js';

export interface Tokenizer extends Detokenizer {
  encode(text: string, o?: { addSpecialTokens?: boolean }): number[];
}

export interface GenerationContext {
  backend: ModelBackend;
  /** The base model's name: a request for any other `model` names an adapter. */
  baseName: string;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate;
  metrics: ServerMetrics;
  /** How long a stream may stay unread (socket buffer full) before it is cancelled, ms. */
  stallMs: number;
}

type Kind = 'completion' | 'chat';

export async function handleGeneration(ctx: GenerationContext, kind: Kind, p: CompletionParams | ChatParams, res: ServerResponse): Promise<void> {
  const prompt = kind === 'chat' ? ctx.chatTemplate.render((p as ChatParams).messages) : (p as CompletionParams).prompt;
  const ids = typeof prompt === 'string' ? ctx.tokenizer.encode(prompt, { addSpecialTokens: true }) : prompt;
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
  const created = Math.floor(Date.now() / 1000);
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  // Token ids not yet sent in a chunk (return_token_ids).
  let unsentIds: number[] = [];
  const chunk = (delta: string | null, finish: string | null) => {
    const ids = p.returnTokenIds ? { token_ids: unsentIds } : {};
    unsentIds = [];
    return {
      id, object, created, model: p.model,
      choices: [kind === 'chat'
        ? { index: 0, delta: delta === null ? {} : { content: delta }, logprobs: null, finish_reason: finish, ...ids }
        : { index: 0, text: delta ?? '', logprobs: null, finish_reason: finish, ...ids }],
    };
  };
  const text = new TextStream(ctx.tokenizer, p.stop);
  const abort = new AbortController();
  let stall: NodeJS.Timeout | undefined;
  res.on('close', () => {
    clearTimeout(stall);
    if (!res.writableFinished) abort.abort(); // the client went away: free its row now
  });
  // Latencies as the client sees them: from submit to each token's arrival on this thread.
  const submitted = performance.now();
  let lastTokenAt = 0;
  const handle = ctx.backend.submit({
    prompt: ids,
    adapter: p.model === ctx.baseName ? undefined : p.model,
    sampling: { temperature: p.temperature, topP: p.topP, topK: p.topK, seed: p.seed, maxTokens: p.maxTokens, ...(p.ignoreEos ? { stopTokenIds: [] } : {}) },
    signal: abort.signal,
    onToken: (t) => {
      const now = performance.now();
      if (lastTokenAt) ctx.metrics.perToken.observe((now - lastTokenAt) / 1000);
      else ctx.metrics.ttft.observe((now - submitted) / 1000);
      lastTokenAt = now;
      unsentIds.push(t);
      const delta = text.push(t);
      if (p.stream && delta) send(chunk(delta, null));
      if (text.stopped) return false;
    },
  });
  // A full socket buffer pauses the row (it skips decode steps) until the client reads; a client
  // that reads nothing for stallMs holds a row and its KV cache, so it is cancelled.
  const send = (data: unknown) => {
    sendEvent(res, data);
    if (stall || streamReady(res) || res.destroyed) return;
    handle.pause();
    stall = setTimeout(() => abort.abort(), ctx.stallMs);
    res.once('drain', () => {
      clearTimeout(stall);
      stall = undefined;
      handle.resume();
    });
  };
  if (p.stream) {
    startEventStream(res);
    if (kind === 'chat') send({ ...chunk(null, null), choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
  }
  const outcome = await handle.outcome;
  clearTimeout(stall);
  ctx.metrics.promptTokens.inc({}, ids.length);
  ctx.metrics.generatedTokens.inc({}, outcome.tokens.length);
  ctx.metrics.finished.inc({ finished_reason: outcome.finishReason });
  if (outcome.finishReason === 'cancelled') return;
  if (outcome.finishReason === 'error') {
    const e = outcome.error;
    const err = e instanceof ServeError ? e : new ServeError(500, 'generation_failed', `generation failed: ${e?.message ?? 'unknown error'}`);
    if (!p.stream) throw err;
    sendEvent(res, err.toJSON());
    return endEventStream(res);
  }
  const tail = text.flush();
  const usage = { prompt_tokens: ids.length, completion_tokens: outcome.tokens.length, total_tokens: ids.length + outcome.tokens.length };
  const finish = outcome.finishReason;
  if (p.stream) {
    if (tail || unsentIds.length) sendEvent(res, chunk(tail, null));
    sendEvent(res, chunk(null, finish));
    if (p.includeUsage) sendEvent(res, { id, object, created, model: p.model, choices: [], usage });
    return endEventStream(res);
  }
  const ids2 = p.returnTokenIds ? { token_ids: outcome.tokens } : {};
  const promptIds = p.returnTokenIds ? { prompt_token_ids: ids } : {};
  const body = kind === 'chat'
    ? { id, object: 'chat.completion', created, model: p.model, choices: [{ index: 0, message: { role: 'assistant', content: text.full }, logprobs: null, finish_reason: finish, ...ids2 }], usage, ...promptIds }
    : { id, object: 'text_completion', created, model: p.model, choices: [{ index: 0, text: text.full, logprobs: null, finish_reason: finish, ...ids2 }], usage, ...promptIds };
  const json = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}
