// The LLM judge against a small OpenAI-compatible server started by this test on 127.0.0.1 (no
// external network; every request is counted and bounded): good answers, a 500 then success, a 429
// with Retry-After, malformed JSON, an unreachable endpoint, a timeout, and the API key's handling.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { chatCompletionsUrl, judgeExamples, parseJudgeReply, type JudgeItem } from '../src/index.js';

type Handler = (body: { model: string; messages: Array<{ role: string; content: string }> }, req: IncomingMessage, res: ServerResponse) => void;

let server: Server;
let base = '';
let handler: Handler = () => {};
let requests = 0;
let inFlight = 0;
let maxInFlight = 0;
const MAX_REQUESTS = 200;

function reply(res: ServerResponse, content: string, status = 200): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] }));
}

beforeAll(async () => {
  server = createServer((req, res) => {
    requests++;
    if (requests > MAX_REQUESTS) {
      res.writeHead(503);
      res.end('test server: request limit reached');
      return;
    }
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on('close', () => inFlight--);
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      if (req.url !== '/v1/chat/completions' || req.method !== 'POST') {
        res.writeHead(404);
        res.end('not found');
        return;
      }
      // Hold each answer briefly so that concurrent requests overlap.
      setTimeout(() => handler(JSON.parse(data), req, res), 15);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const items: JudgeItem[] = Array.from({ length: 6 }, (_, i) => ({ instruction: `task ${i}`, input: i % 2 ? 'x = 1' : '', reference: `ref ${i}`, output: `answer ${i}` }));
const fast = { backoffMs: 5, maxBackoffMs: 50, timeoutMs: 2000 };

function reset(h: Handler): void {
  handler = h;
  requests = 0;
  maxInFlight = 0;
}

describe('judgeExamples', () => {
  it('scores every item on both rubrics with at most `concurrency` requests in flight', async () => {
    const seen: string[] = [];
    reset((body, req, res) => {
      seen.push(`${body.model}|${req.headers.authorization ?? ''}`);
      const rubric = /CORRECT/.test(body.messages[0].content) ? 'correctness' : 'helpfulness';
      const i = Number(/task (\d+)/.exec(body.messages[1].content)![1]);
      reply(res, JSON.stringify({ score: rubric === 'correctness' ? i / 10 : 1 - i / 10, reason: `${rubric} of ${i}` }));
    });
    const done: number[] = [];
    const r = await judgeExamples(items, { url: `${base}/v1`, model: 'judge-1', apiKey: 'sk-test-secret', concurrency: 3, ...fast }, (d) => done.push(d));
    expect(r.errors).toBe(0);
    expect(r.requests).toBe(12);
    expect(r.unreachable).toBeUndefined();
    expect(maxInFlight).toBeLessThanOrEqual(3);
    expect(maxInFlight).toBeGreaterThan(1);
    expect(done.at(-1)).toBe(12);
    for (const [i, v] of r.verdicts.entries()) {
      expect(v.correctness).toMatchObject({ score: i / 10, reason: `correctness of ${i}`, attempts: 1 });
      expect(v.helpfulness?.score).toBeCloseTo(1 - i / 10, 12);
    }
    expect(new Set(seen)).toEqual(new Set(['judge-1|Bearer sk-test-secret']));
  });

  it('retries a 500 and a 429 (honouring Retry-After) and then succeeds', async () => {
    const calls = new Map<string, number>();
    reset((body, _req, res) => {
      const key = body.messages[0].content.slice(0, 40) + body.messages[1].content;
      const n = (calls.get(key) ?? 0) + 1;
      calls.set(key, n);
      if (/task 0/.test(body.messages[1].content) && n === 1) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('upstream exploded');
      } else if (/task 1/.test(body.messages[1].content) && n === 1) {
        res.writeHead(429, { 'retry-after': '0' });
        res.end('slow down');
      } else reply(res, '{"score": 0.75, "reason": "fine"}');
    });
    const r = await judgeExamples(items.slice(0, 2), { url: base, model: 'm', rubrics: ['correctness'], concurrency: 2, ...fast });
    expect(r.errors).toBe(0);
    expect(r.verdicts[0].correctness).toMatchObject({ score: 0.75, attempts: 2 });
    expect(r.verdicts[1].correctness).toMatchObject({ score: 0.75, attempts: 2 });
    expect(r.requests).toBe(4);
  });

  it('records malformed JSON and bad scores as errors on that example, without dropping it or retrying', async () => {
    reset((body, _req, res) => {
      const i = Number(/task (\d+)/.exec(body.messages[1].content)![1]);
      if (i === 0) reply(res, 'The answer looks right, score 0.9');
      else if (i === 1) reply(res, '{"score": 7, "reason": "out of ten"}');
      else if (i === 2) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"choices": [ this is not json');
      } else if (i === 3) reply(res, '```json\n{"score": "0.5", "reason": "fenced"}\n```');
      else reply(res, '{"reason": "forgot the score"}');
    });
    const r = await judgeExamples(items.slice(0, 5), { url: `${base}/v1/chat/completions`, model: 'm', rubrics: ['correctness'], ...fast });
    expect(r.verdicts).toHaveLength(5);
    expect(r.requests).toBe(5);
    expect(r.verdicts[0].correctness?.error).toMatch(/judge reply is not JSON: "The answer looks right/);
    expect(r.verdicts[1].correctness?.error).toMatch(/"score" 7 is outside \[0, 1\]/);
    expect(r.verdicts[2].correctness?.error).toMatch(/response is not JSON/);
    expect(r.verdicts[3].correctness).toMatchObject({ score: 0.5, reason: 'fenced' });
    expect(r.verdicts[4].correctness?.error).toMatch(/no "score"/);
    for (const i of [0, 1, 2, 4]) expect(r.verdicts[i].correctness?.score).toBeUndefined();
    expect(r.errors).toBe(4);
  });

  it('gives up after the retries on persistent 5xx, and does not retry a 401; the key never appears in messages', async () => {
    reset((body, req, res) => {
      if (/task 0/.test(body.messages[1].content)) {
        res.writeHead(503);
        res.end('down');
      } else {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `invalid key ${req.headers.authorization}` }));
      }
    });
    const r = await judgeExamples(items.slice(0, 2), { url: base, model: 'm', apiKey: 'sk-very-secret-key', rubrics: ['helpfulness'], retries: 2, ...fast });
    expect(r.verdicts[0].helpfulness).toMatchObject({ attempts: 3 });
    expect(r.verdicts[0].helpfulness?.error).toMatch(/HTTP 503.*after 3 attempts/);
    expect(r.verdicts[1].helpfulness).toMatchObject({ attempts: 1 });
    expect(r.verdicts[1].helpfulness?.error).toMatch(/HTTP 401/);
    expect(JSON.stringify(r)).not.toContain('sk-very-secret-key');
    expect(r.verdicts[1].helpfulness?.error).toContain('***');
  });

  it('retries a request that times out', async () => {
    let first = true;
    reset((_body, _req, res) => {
      if (first) {
        first = false;
        return; // never answers: the client's timeout fires
      }
      reply(res, '{"score": 1, "reason": "ok"}');
    });
    const r = await judgeExamples(items.slice(0, 1), { url: base, model: 'm', rubrics: ['correctness'], ...fast, timeoutMs: 200 });
    expect(r.verdicts[0].correctness).toMatchObject({ score: 1, attempts: 2 });
  });

  it('says clearly when the endpoint is unreachable, and fails the rest fast', async () => {
    // A port that was just listening and is now closed.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const t0 = Date.now();
    const r = await judgeExamples(items, { url: `http://127.0.0.1:${port}`, model: 'm', concurrency: 2, retries: 2, ...fast });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r.unreachable).toMatch(/ECONNREFUSED/);
    expect(r.errors).toBe(12);
    for (const v of r.verdicts) {
      expect(v.correctness?.error).toMatch(new RegExp(`judge unreachable at http://127\\.0\\.0\\.1:${port}/v1/chat/completions: .*ECONNREFUSED`));
      expect(v.helpfulness?.error).toMatch(/judge unreachable/);
    }
    // At most the first wave retries; the rest fail without a request.
    expect(r.requests).toBeLessThanOrEqual(2 * 3);
  });

  it('rejects a URL that is not http(s) and an empty model name', async () => {
    await expect(judgeExamples(items, { url: 'not a url', model: 'm' })).rejects.toThrow(/is not a URL/);
    await expect(judgeExamples(items, { url: 'ftp://host/v1', model: 'm' })).rejects.toThrow(/http:\/\/ or https:\/\//);
    await expect(judgeExamples(items, { url: base, model: ' ' })).rejects.toThrow(/--judge-model/);
  });
});

describe('judge helpers', () => {
  it('resolves the chat-completions URL from a base, /v1, or the full path', () => {
    expect(chatCompletionsUrl('http://h:1')).toBe('http://h:1/v1/chat/completions');
    expect(chatCompletionsUrl('http://h:1/v1/')).toBe('http://h:1/v1/chat/completions');
    expect(chatCompletionsUrl('https://h/openai/v1/chat/completions')).toBe('https://h/openai/v1/chat/completions');
    expect(chatCompletionsUrl('http://h/proxy')).toBe('http://h/proxy/v1/chat/completions');
  });

  it('parses strict JSON, fenced JSON and JSON inside prose; rejects anything else', () => {
    expect(parseJudgeReply('{"score": 0.2, "reason": "meh"}')).toEqual({ score: 0.2, reason: 'meh' });
    expect(parseJudgeReply('Sure! {"score": 1, "reason": "exact"} Hope that helps.')).toEqual({ score: 1, reason: 'exact' });
    expect(parseJudgeReply('```\n{"score": 0}\n```')).toEqual({ score: 0, reason: '' });
    expect(() => parseJudgeReply('')).toThrow(/not JSON/);
    expect(() => parseJudgeReply('[0.5]')).toThrow(/not an object/);
    expect(() => parseJudgeReply('{"score": null}')).toThrow(/not a number/);
    expect(() => parseJudgeReply('{"score": -0.1}')).toThrow(/outside \[0, 1\]/);
  });

  it('accepts only plain decimal strings as scores ("0x1" is not a score)', () => {
    for (const ok of ['1', '0.75', '.5', ' 0 ', '1.']) expect(parseJudgeReply(`{"score": "${ok}"}`).score).toBe(Number(ok));
    for (const bad of ['0x1', '0b1', '1e0', '5e-1', 'Infinity', ' ', '+1', '1,0', '0.5.1']) {
      expect(() => parseJudgeReply(`{"score": "${bad}"}`), bad).toThrow(/not a number/);
    }
  });

  it('stops reading a response body past 1 MiB (a 400 MB body took 3.5 GB of RSS), and shows only the start of an error body', async () => {
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    reset((_body, _req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"choices": [{"message": {"content": "');
      // Up to 400 MB, honouring backpressure; the client's cancel closes the socket and ends this.
      const pump = () => {
        while (sent < 400 * 1024 * 1024 && !res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const rss = process.memoryUsage().rss;
    const r = await judgeExamples(items.slice(0, 1), { url: base, model: 'm', rubrics: ['correctness'], ...fast });
    expect(r.verdicts[0].correctness?.error).toMatch(/larger than the 1048576-byte limit/);
    expect(r.requests).toBe(1);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 1024 * 1024);

    reset((_body, _req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(500 * 1024 * 1024) });
      res.write('{');
    });
    const declared = await judgeExamples(items.slice(0, 1), { url: base, model: 'm', rubrics: ['correctness'], ...fast });
    expect(declared.verdicts[0].correctness?.error).toMatch(/declares 524288000 bytes/);

    reset((_body, _req, res) => {
      res.writeHead(401);
      res.end(`denied ${'x'.repeat(2 * 1024 * 1024)}`);
    });
    const denied = await judgeExamples(items.slice(0, 1), { url: base, model: 'm', rubrics: ['correctness'], ...fast });
    expect(denied.verdicts[0].correctness?.error).toMatch(/^HTTP 401[^]*denied x+$/);
    expect(denied.verdicts[0].correctness!.error!.length).toBeLessThan(300);
  });
});
