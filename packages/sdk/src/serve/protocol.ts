// Request validation for /v1/completions and /v1/chat/completions, with OpenAI's parameter names and
// defaults (max_tokens 16 for completions, as OpenAI and vLLM; temperature 1, top_p 1), and vLLM's
// top_k, ignore_eos and return_token_ids extensions. A field this server cannot honour is refused by
// name (n > 1, logprobs, echo, penalties, tools), never silently ignored.
import { randomInt } from 'node:crypto';

import type { ChatMessage } from './chat.js';
import { badRequest } from './errors.js';

export interface GenerationParams {
  model: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  /** vLLM's return_token_ids: the prompt's and the output's token ids in the response. */
  returnTokenIds: boolean;
  /** vLLM's ignore_eos: generate max_tokens even past the eos token. */
  ignoreEos: boolean;
}

export interface CompletionParams extends GenerationParams {
  /** Text, or token ids given directly. */
  prompt: string | number[];
}

export interface ChatParams extends GenerationParams {
  messages: ChatMessage[];
}

export interface Limits {
  /** The largest max_tokens accepted (default 2048; also bounded by the model's positions). */
  maxTokensCap: number;
  /** Default max_tokens for chat (OpenAI: as many as fit; here the cap). */
  vocabSize: number;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function optNumber(b: Record<string, unknown>, key: string, def: number, lo: number, hi: number, integer = false): number {
  const v = b[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) throw badRequest(`${key} must be ${integer ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}`, key);
  if (v < lo || v > hi) throw badRequest(`${key} must be in [${lo}, ${hi}], got ${v}`, key);
  return v;
}

function refuseUnsupported(b: Record<string, unknown>): void {
  const n = b.n;
  if (n !== undefined && n !== null && n !== 1) throw badRequest(`n must be 1: this server returns one choice per request (got ${JSON.stringify(n)}); send several requests instead`, 'n', 'unsupported_parameter');
  if (b.best_of !== undefined && b.best_of !== null && b.best_of !== 1) throw badRequest('best_of must be 1', 'best_of', 'unsupported_parameter');
  if (b.echo === true) throw badRequest('echo is not supported', 'echo', 'unsupported_parameter');
  for (const key of ['logprobs', 'top_logprobs']) {
    const v = b[key];
    if (v !== undefined && v !== null && v !== false && v !== 0) throw badRequest(`${key} is not supported`, key, 'unsupported_parameter');
  }
  for (const key of ['presence_penalty', 'frequency_penalty']) {
    const v = b[key];
    if (v !== undefined && v !== null && v !== 0) throw badRequest(`${key} is not supported (only 0)`, key, 'unsupported_parameter');
  }
  for (const key of ['tools', 'functions', 'logit_bias', 'suffix']) {
    const v = b[key];
    if (v !== undefined && v !== null && !(Array.isArray(v) && !v.length) && !(isObj(v) && !Object.keys(v).length)) throw badRequest(`${key} is not supported`, key, 'unsupported_parameter');
  }
}

function common(b: Record<string, unknown>, limits: Limits, defaultMaxTokens: number): GenerationParams {
  if (typeof b.model !== 'string' || !b.model) throw badRequest('model is required: the base model\'s name or a served adapter\'s (see GET /v1/models)', 'model', 'missing_required_parameter');
  refuseUnsupported(b);
  const maxTokensKey = b.max_completion_tokens !== undefined && b.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = optNumber(b, maxTokensKey, defaultMaxTokens, 1, limits.maxTokensCap, true);
  let stop: string[] = [];
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop)) stop = b.stop as string[];
  else if (b.stop !== undefined && b.stop !== null) throw badRequest('stop must be a string or an array of strings', 'stop');
  if (stop.length > 4 || stop.some((s) => typeof s !== 'string' || !s.length || s.length > 1000)) throw badRequest('stop must hold at most 4 non-empty strings of at most 1000 characters', 'stop');
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw badRequest('stream must be a boolean', 'stream');
  const so = b.stream_options;
  if (so !== undefined && so !== null && !isObj(so)) throw badRequest('stream_options must be an object', 'stream_options');
  return {
    model: b.model,
    maxTokens,
    temperature: optNumber(b, 'temperature', 1, 0, 2),
    topP: optNumber(b, 'top_p', 1, Number.MIN_VALUE, 1),
    topK: optNumber(b, 'top_k', 0, -1, limits.vocabSize, true),
    seed: optNumber(b, 'seed', randomInt(2 ** 31), -(2 ** 53), 2 ** 53, true) >>> 0,
    stop,
    stream: b.stream === true,
    includeUsage: isObj(so) && so.include_usage === true,
    returnTokenIds: b.return_token_ids === true,
    ignoreEos: b.ignore_eos === true,
  };
}

export function parseCompletion(body: unknown, limits: Limits): CompletionParams {
  if (!isObj(body)) throw badRequest('the request body must be a JSON object');
  const p = body.prompt;
  let prompt: string | number[];
  const ids = (a: unknown[]) => {
    if (!a.length || !a.every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < limits.vocabSize)) throw badRequest(`a token-id prompt must hold integers in [0, ${limits.vocabSize})`, 'prompt');
    return a as number[];
  };
  if (typeof p === 'string') prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = p[0];
  else if (Array.isArray(p) && p.length === 1 && Array.isArray(p[0])) prompt = ids(p[0]);
  else if (Array.isArray(p) && p.length && p.every((x) => typeof x === 'number')) prompt = ids(p);
  else if (Array.isArray(p) && p.length > 1) throw badRequest('one prompt per request (batched prompts are not supported; send several requests)', 'prompt', 'unsupported_parameter');
  else throw badRequest('prompt is required: a string, or an array of token ids', 'prompt', 'missing_required_parameter');
  return { ...common(body, limits, 16), prompt };
}

export function parseChat(body: unknown, limits: Limits): ChatParams {
  if (!isObj(body)) throw badRequest('the request body must be a JSON object');
  const raw = body.messages;
  if (!Array.isArray(raw) || !raw.length) throw badRequest('messages must be a non-empty array', 'messages', 'missing_required_parameter');
  const messages = raw.map((m, i): ChatMessage => {
    if (!isObj(m)) throw badRequest(`messages[${i}] must be an object`, 'messages');
    if (m.role !== 'system' && m.role !== 'user' && m.role !== 'assistant' && m.role !== 'developer') throw badRequest(`messages[${i}].role must be system, developer, user or assistant, got ${JSON.stringify(m.role)}`, 'messages');
    let content = m.content;
    if (Array.isArray(content)) {
      content = content.map((part, j) => {
        if (!isObj(part) || part.type !== 'text' || typeof part.text !== 'string') throw badRequest(`messages[${i}].content[${j}]: only text parts are supported`, 'messages');
        return part.text;
      }).join('');
    }
    if (typeof content !== 'string') throw badRequest(`messages[${i}].content must be a string or text parts`, 'messages');
    return { role: m.role, content };
  });
  return { ...common(body, limits, limits.maxTokensCap), messages };
}
