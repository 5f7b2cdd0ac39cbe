/**
 * LLM-as-judge over any OpenAI-compatible chat-completions endpoint (`POST …/v1/chat/completions`).
 *
 * Two rubrics, correctness (against the reference) and helpfulness (for the instruction), each asking
 * for strict JSON `{"score": x, "reason": "..."}` with x in [0, 1]. Replies are parsed defensively
 * (code fences and prose around the object are tolerated; a missing, non-numeric, non-decimal or
 * out-of-range score is an error), and no response body is read past MAX_JUDGE_RESPONSE_BYTES. Requests run with bounded concurrency; 429, 5xx, timeouts and network errors
 * are retried with exponential backoff (honouring Retry-After). A verdict that still fails carries an
 * `error` instead of a score: no example is ever dropped. When the endpoint cannot be reached at all
 * (no request ever got an HTTP answer), the remaining requests fail fast with the same message and
 * the result says `unreachable`. The API key goes only into the Authorization header; every message
 * that leaves this module has it redacted.
 */

export type JudgeRubric = 'correctness' | 'helpfulness';
export const JUDGE_RUBRICS: readonly JudgeRubric[] = ['correctness', 'helpfulness'];

export type JudgeErrorCode = 'E_JUDGE_CONFIG' | 'E_JUDGE_UNREACHABLE';

export class JudgeError extends Error {
  readonly code: JudgeErrorCode;
  constructor(code: JudgeErrorCode, message: string) {
    super(message);
    this.name = 'JudgeError';
    this.code = code;
  }
}

export interface JudgeOptions {
  /** The endpoint: a base URL (`http://host:port`, `…/v1`) or the full `…/v1/chat/completions`. */
  url: string;
  /** The `model` field of the request. */
  model: string;
  /** Bearer token (the CLI reads LORA_JUDGE_API_KEY); never printed. */
  apiKey?: string;
  rubrics?: readonly JudgeRubric[];
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Retries after the first attempt on 429/5xx/timeouts/network errors (default 3). */
  retries?: number;
  /** Per-request timeout in ms (default 60000). */
  timeoutMs?: number;
  /** First backoff in ms, doubled on each retry (default 500), capped at maxBackoffMs (default 10000). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** `max_tokens` of each request (default 300). */
  maxTokens?: number;
  /** Replaceable for tests; default the global fetch. */
  fetch?: typeof fetch;
  signal?: AbortSignal;
}

/** What the judge sees of one example. */
export interface JudgeItem {
  instruction: string;
  input: string;
  reference: string;
  output: string;
}

export interface JudgeVerdict {
  /** 0..1; absent when `error` is set. */
  score?: number;
  reason?: string;
  error?: string;
  /** HTTP attempts made (0: failed fast because the judge was already known to be unreachable). */
  attempts: number;
}

export interface JudgeRunResult {
  /** One entry per item, one verdict per rubric. */
  verdicts: Array<Partial<Record<JudgeRubric, JudgeVerdict>>>;
  /** Set when no request ever reached the endpoint: the reason, e.g. "connect ECONNREFUSED 127.0.0.1:9". */
  unreachable?: string;
  requests: number;
  errors: number;
}

const SYSTEM: Record<JudgeRubric, string> = {
  correctness:
    'You are a strict grader. Judge whether the model response is CORRECT with respect to the reference answer ' +
    'for the given instruction: 1 means it is fully correct (equivalent in meaning or behaviour to the reference), ' +
    '0 means it is wrong, empty or unrelated; give partial credit in between. ' +
    'Reply with strict JSON only, no other text: {"score": <number from 0 to 1>, "reason": "<one short sentence>"}',
  helpfulness:
    'You are a strict grader. Judge how HELPFUL the model response is to a user who gave the instruction: ' +
    'does it address the task, is it clear, complete and usable? Use the reference answer as a guide to what a good ' +
    'answer contains. 1 means very helpful, 0 means not helpful at all (empty, off-topic, or nonsense). ' +
    'Reply with strict JSON only, no other text: {"score": <number from 0 to 1>, "reason": "<one short sentence>"}',
};

/** The user message for one item. */
export function judgeUserMessage(item: JudgeItem): string {
  const parts = [`### Instruction:\n${item.instruction}`];
  if (item.input.trim()) parts.push(`### Input:\n${item.input}`);
  parts.push(`### Reference answer:\n${item.reference}`, `### Model response:\n${item.output.trim() ? item.output : '(empty response)'}`);
  return parts.join('\n\n');
}

/** Resolves the chat-completions URL from what the user gave. */
export function chatCompletionsUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new JudgeError('E_JUDGE_CONFIG', `--judge-url '${url}' is not a URL (expected e.g. http://127.0.0.1:8000/v1)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new JudgeError('E_JUDGE_CONFIG', `--judge-url must be http:// or https://, got '${u.protocol}'`);
  }
  const path = u.pathname.replace(/\/+$/, '');
  if (path.endsWith('/chat/completions')) u.pathname = path;
  else if (path.endsWith('/v1')) u.pathname = `${path}/chat/completions`;
  else u.pathname = `${path}/v1/chat/completions`;
  return u.toString();
}

/**
 * Reads `{"score": x, "reason": "..."}` out of a judge's reply text. Tolerates code fences and text
 * around one JSON object; throws an Error whose message says what was wrong.
 */
export function parseJudgeReply(content: string): { score: number; reason: string } {
  const text = content.trim();
  const snippet = text.length > 120 ? `${text.slice(0, 120)}…` : text;
  const candidates: string[] = [text];
  const fenced = /```(?:json)?\s*([\s\S]*?)```/i.exec(text);
  if (fenced) candidates.push(fenced[1].trim());
  const first = text.indexOf('{');
  const last = text.lastIndexOf('}');
  if (first >= 0 && last > first) candidates.push(text.slice(first, last + 1));
  let obj: unknown;
  let parsed = false;
  for (const c of candidates) {
    try {
      obj = JSON.parse(c);
      parsed = true;
      break;
    } catch {
      // try the next candidate
    }
  }
  if (!parsed) throw new Error(`judge reply is not JSON: ${JSON.stringify(snippet)}`);
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error(`judge reply is JSON but not an object: ${JSON.stringify(snippet)}`);
  const o = obj as Record<string, unknown>;
  const raw = o.score;
  // A string score must be a plain decimal: Number() would also read "0x1", "1e0", "  " or "Infinity".
  const score = typeof raw === 'number' ? raw : typeof raw === 'string' && PLAIN_DECIMAL.test(raw) ? Number(raw) : Number.NaN;
  if (!('score' in o)) throw new Error(`judge reply has no "score": ${JSON.stringify(snippet)}`);
  if (!Number.isFinite(score)) throw new Error(`judge reply's "score" is not a number: ${JSON.stringify(raw)}`);
  if (score < 0 || score > 1) throw new Error(`judge reply's "score" ${score} is outside [0, 1]`);
  const reason = typeof o.reason === 'string' ? o.reason : o.reason === undefined ? '' : JSON.stringify(o.reason);
  return { score, reason };
}

/** "1", "0.75", ".5", "1." with optional spaces: the only string forms a score may take. */
const PLAIN_DECIMAL = /^\s*(?:\d+(?:\.\d*)?|\.\d+)\s*$/;

/**
 * Most bytes read from one response: a verdict with max_tokens 300 is under 2 kB of JSON, and even
 * with logprobs a few hundred kB. A server sending more (400 MB took 3.5 GB of RSS) is cut off.
 */
export const MAX_JUDGE_RESPONSE_BYTES = 1024 * 1024;
/** Of an error response only the start is shown. */
const MAX_ERROR_BODY_BYTES = 4096;

/**
 * The body as text, reading at most `limit` bytes: past it the stream is cancelled and, unless
 * `truncate`, an error says so. Content-Length above the limit is refused before reading.
 */
async function boundedText(res: Response, limit: number, truncate: boolean): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (!truncate && Number.isFinite(declared) && declared > limit) {
    await res.body?.cancel().catch(() => {});
    throw new Attempt(`the response declares ${declared} bytes, more than the ${limit}-byte limit for a judge reply`, false, false);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (total + value.byteLength > limit) {
      parts.push(value.subarray(0, limit - total));
      total = limit;
      await reader.cancel().catch(() => {});
      if (truncate) break;
      throw new Attempt(`the response is larger than the ${limit}-byte limit for a judge reply`, false, false);
    }
    parts.push(value);
    total += value.byteLength;
  }
  return Buffer.concat(parts, total).toString('utf8');
}

class Attempt extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    /** true: no HTTP answer came back (connection refused, DNS, reset, timeout). */
    readonly network: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

function networkReason(e: unknown): string {
  const err = e as Error & { cause?: unknown };
  if (err?.name === 'TimeoutError') return 'request timed out';
  const cause = err?.cause as (Error & { code?: string; errors?: Error[] }) | undefined;
  if (cause) {
    if (cause.message) return cause.message;
    if (cause.errors?.length) return cause.errors.map((x) => x.message).join('; ');
    if (cause.code) return cause.code;
  }
  return err?.message ?? String(e);
}

function retryAfter(h: string | null): number | undefined {
  if (!h) return undefined;
  const s = Number(h);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const t = Date.parse(h);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : undefined;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Judges every item on every rubric. Never throws for a bad reply or endpoint: see the module comment. */
export async function judgeExamples(
  items: readonly JudgeItem[],
  o: JudgeOptions,
  onProgress?: (done: number, total: number) => void,
): Promise<JudgeRunResult> {
  const endpoint = chatCompletionsUrl(o.url);
  if (!o.model.trim()) throw new JudgeError('E_JUDGE_CONFIG', '--judge-model must name the model the endpoint serves');
  const rubrics = o.rubrics ?? JUDGE_RUBRICS;
  const concurrency = Math.max(1, Math.floor(o.concurrency ?? 4));
  const retries = Math.max(0, Math.floor(o.retries ?? 3));
  const timeoutMs = o.timeoutMs ?? 60_000;
  const backoff = o.backoffMs ?? 500;
  const maxBackoff = o.maxBackoffMs ?? 10_000;
  const doFetch = o.fetch ?? fetch;
  const key = o.apiKey ?? '';
  const redact = (s: string) => (key.length >= 4 ? s.split(key).join('***') : s);

  const verdicts: JudgeRunResult['verdicts'] = items.map(() => ({}));
  const tasks: Array<{ item: number; rubric: JudgeRubric }> = [];
  for (let i = 0; i < items.length; i++) for (const r of rubrics) tasks.push({ item: i, rubric: r });
  let answered = false; // some request got an HTTP response
  let unreachable: string | undefined;
  let requests = 0;
  let done = 0;

  const attempt = async (body: string): Promise<{ score: number; reason: string }> => {
    requests++;
    const signals = [AbortSignal.timeout(timeoutMs), ...(o.signal ? [o.signal] : [])];
    let res: Response;
    try {
      res = await doFetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body,
        signal: AbortSignal.any(signals),
      });
    } catch (e) {
      if (o.signal?.aborted) throw e;
      throw new Attempt(networkReason(e), true, true);
    }
    answered = true;
    let text: string;
    try {
      text = await boundedText(res, res.ok ? MAX_JUDGE_RESPONSE_BYTES : MAX_ERROR_BODY_BYTES, !res.ok);
    } catch (e) {
      if (e instanceof Attempt) throw e;
      throw new Attempt(`reading the response failed: ${networkReason(e)}`, true, false);
    }
    if (!res.ok) {
      const snippet = text.replace(/\s+/g, ' ').trim().slice(0, 200);
      const retryable = res.status === 429 || res.status >= 500;
      throw new Attempt(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${snippet ? `: ${snippet}` : ''}`, retryable, false, retryAfter(res.headers.get('retry-after')));
    }
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      throw new Attempt(`the endpoint's response is not JSON: ${JSON.stringify(text.slice(0, 120))}`, false, false);
    }
    const content = (payload as { choices?: Array<{ message?: { content?: unknown } }> })?.choices?.[0]?.message?.content;
    if (typeof content !== 'string') throw new Attempt('the response has no choices[0].message.content string (not an OpenAI-compatible chat completion?)', false, false);
    try {
      return parseJudgeReply(content);
    } catch (e) {
      throw new Attempt((e as Error).message, false, false);
    }
  };

  const runTask = async (t: { item: number; rubric: JudgeRubric }): Promise<JudgeVerdict> => {
    if (unreachable !== undefined) return { error: `judge unreachable at ${endpoint}: ${unreachable}`, attempts: 0 };
    const body = JSON.stringify({
      model: o.model,
      messages: [
        { role: 'system', content: SYSTEM[t.rubric] },
        { role: 'user', content: judgeUserMessage(items[t.item]) },
      ],
      temperature: 0,
      max_tokens: o.maxTokens ?? 300,
    });
    let attempts = 0;
    for (;;) {
      attempts++;
      try {
        const r = await attempt(body);
        return { score: r.score, reason: redact(r.reason), attempts };
      } catch (e) {
        if (!(e instanceof Attempt)) throw e;
        if (e.network && !answered && unreachable !== undefined) return { error: `judge unreachable at ${endpoint}: ${unreachable}`, attempts };
        if (e.retryable && attempts <= retries) {
          const wait = Math.min(maxBackoff, e.retryAfterMs ?? backoff * 2 ** (attempts - 1));
          await sleep(wait, o.signal);
          continue;
        }
        if (e.network && !answered) {
          unreachable = redact(e.message);
          return { error: `judge unreachable at ${endpoint}: ${unreachable} (after ${attempts} attempt${attempts === 1 ? '' : 's'})`, attempts };
        }
        return { error: redact(`${e.message}${e.retryable ? ` (after ${attempts} attempts)` : ''}`), attempts };
      }
    }
  };

  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const t = tasks[next++];
      verdicts[t.item][t.rubric] = await runTask(t);
      done++;
      onProgress?.(done, tasks.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, tasks.length) }, worker));
  let errors = 0;
  for (const v of verdicts) for (const r of rubrics) if (v[r]?.error !== undefined) errors++;
  return { verdicts, ...(unreachable !== undefined && !answered ? { unreachable } : {}), requests, errors };
}
