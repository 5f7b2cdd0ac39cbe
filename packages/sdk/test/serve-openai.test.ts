// `lora serve` driven by the official `openai` client on 127.0.0.1: greedy output equals in-process
// generate() token for token (base and each adapter, non-streaming and streaming, alone and in one
// batch), chat through the Alpaca rule, adapters loaded and unloaded at run time, errors in OpenAI's
// shape, and /metrics agreeing with what the client saw. The server runs the model in its worker
// thread (createServer with a model folder), as `lora serve` does.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { alpacaPrompt, createServer, OptTokenizer, type LoraServer } from '../src/index.js';
import { makeServeFixture, referenceText, type ServeFixture } from './serve-fixture.js';
import { greedyCompletion, listenWithClient } from './serve-openai-client.js';

let fx: ServeFixture;
let server: LoraServer;
let base: string;
let client: OpenAI;

const PROMPTS = ['Write a function that adds two numbers.', 'Reverse a string in Python', 'def add(a, b):'];
const MAX = 24;

beforeAll(async () => {
  fx = await makeServeFixture(['alpha', 'beta', 'gamma']);
  const tokenizer = await OptTokenizer.fromPretrained(fx.modelDir);
  server = createServer({ model: fx.modelDir, device: 'cpu' }, { tokenizer, modelName: 'tiny', scheduler: { maxBatch: 8, prefillChunk: 8 } });
  await server.adapters.load('alpha', fx.adapters.alpha);
  await server.adapters.load('beta', fx.adapters.beta);
  ({ base, client } = await listenWithClient(server));
}, 60_000);

afterAll(async () => {
  await server?.close();
  await fx?.cleanup();
});

const complete = (model: string, prompt: string, stream: boolean) => greedyCompletion(client, model, prompt, MAX, stream);

describe('lora serve with the openai client', () => {
  it('lists the base and each adapter (vLLM --lora-modules)', async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toEqual(['tiny', 'alpha', 'beta']);
    expect((list.data[1] as unknown as { parent: string }).parent).toBe('tiny');
  });

  it('greedy completions equal generate() for the base and each adapter, streaming and not', async () => {
    for (const [name, dir] of [['tiny', undefined], ['alpha', fx.adapters.alpha], ['beta', fx.adapters.beta]] as const) {
      const want = await referenceText(fx.modelDir, dir, PROMPTS[0], MAX);
      const r = await complete(name, PROMPTS[0], false);
      expect(r.ids).toEqual(want.ids);
      expect(r.text).toBe(want.text);
      expect(r.usage).toMatchObject({ prompt_tokens: want.promptTokens, completion_tokens: want.tokens });
      expect(r.finish).toBe(want.tokens === MAX ? 'length' : 'stop');
      const s = await complete(name, PROMPTS[0], true);
      expect(s).toEqual(r);
    }
    const a = await referenceText(fx.modelDir, fx.adapters.alpha, PROMPTS[0], MAX);
    const b = await referenceText(fx.modelDir, fx.adapters.beta, PROMPTS[0], MAX);
    expect(a.ids).not.toEqual(b.ids); // the adapters really differ
  });

  it('requests for different adapters in one running batch each get their own output', async () => {
    const jobs = PROMPTS.flatMap((p) => (['tiny', 'alpha', 'beta'] as const).map((name) => ({ p, name })));
    const want = await Promise.all(jobs.map((j) => referenceText(fx.modelDir, j.name === 'tiny' ? undefined : fx.adapters[j.name], j.p, MAX)));
    let maxRunning = 0;
    const probe = setInterval(() => (maxRunning = Math.max(maxRunning, server.scheduler.runningRows)), 1);
    const got = await Promise.all(jobs.map((j, i) => complete(j.name, j.p, i % 2 === 1)));
    clearInterval(probe);
    expect(got.map((g) => g.ids)).toEqual(want.map((w) => w.ids));
    expect(got.map((g) => g.text)).toEqual(want.map((w) => w.text));
    expect(maxRunning).toBeGreaterThan(1);
  });

  it('chat completions render the Alpaca rule and equal generate() on that prompt', async () => {
    const want = await referenceText(fx.modelDir, fx.adapters.alpha, alpacaPrompt({ instruction: PROMPTS[1], input: 'abc' }), MAX);
    const r = await client.chat.completions.create({ model: 'alpha', messages: [{ role: 'system', content: 'abc' }, { role: 'user', content: PROMPTS[1] }], max_tokens: MAX, temperature: 0 });
    expect(r.choices[0].message).toMatchObject({ role: 'assistant', content: want.text });
    const s = await client.chat.completions.create({ model: 'alpha', messages: [{ role: 'system', content: 'abc' }, { role: 'user', content: PROMPTS[1] }], max_tokens: MAX, temperature: 0, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe(want.text);
    await expect(client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }] }))
      .rejects.toMatchObject({ status: 400, code: 'unsupported_conversation' });
  });

  it('stop strings cut the text and finish with stop; seeded sampling is reproducible', async () => {
    const full = (await client.completions.create({ model: 'alpha', prompt: PROMPTS[2], max_tokens: MAX, temperature: 0 })).choices[0].text;
    const stop = full.slice(3, 5);
    expect(stop.length).toBe(2);
    const cut = await client.completions.create({ model: 'alpha', prompt: PROMPTS[2], max_tokens: MAX, temperature: 0, stop: [stop] });
    expect(cut.choices[0].text).toBe(full.slice(0, full.indexOf(stop)));
    expect(cut.choices[0].finish_reason).toBe('stop');
    const sample = () => client.completions.create({ model: 'beta', prompt: PROMPTS[2], max_tokens: 12, temperature: 0.9, top_p: 0.95, seed: 7 });
    expect((await sample()).choices[0].text).toBe((await sample()).choices[0].text);
  });

  it('loads and unloads an adapter at run time', async () => {
    const load = await fetch(`${base}/v1/load_lora_adapter`, { method: 'POST', body: JSON.stringify({ lora_name: 'gamma', lora_path: fx.adapters.gamma }) });
    expect(load.status).toBe(200);
    const want = await referenceText(fx.modelDir, fx.adapters.gamma, PROMPTS[1], MAX);
    expect((await client.completions.create({ model: 'gamma', prompt: PROMPTS[1], max_tokens: MAX, temperature: 0 })).choices[0].text).toBe(want.text);
    expect((await client.models.list()).data.map((m) => m.id)).toContain('gamma');
    const again = await fetch(`${base}/v1/load_lora_adapter`, { method: 'POST', body: JSON.stringify({ lora_name: 'gamma', lora_path: fx.adapters.gamma }) });
    expect(again.status).toBe(400);
    const bad = await fetch(`${base}/v1/load_lora_adapter`, { method: 'POST', body: JSON.stringify({ lora_name: 'delta', lora_path: fx.modelDir }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toMatch(/^adapter_/);
    const unload = await fetch(`${base}/v1/unload_lora_adapter`, { method: 'POST', body: JSON.stringify({ lora_name: 'gamma' }) });
    expect(unload.status).toBe(200);
    await expect(client.completions.create({ model: 'gamma', prompt: 'x', max_tokens: 2 })).rejects.toMatchObject({ status: 404, code: 'model_not_found' });
  });

  it('answers bad requests with OpenAI-shaped errors and keeps serving', async () => {
    const post = (path: string, body: string) => fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const cases: [string, string, number, string][] = [
      ['/v1/completions', '{"model": "tiny", "prompt": ', 400, 'invalid_json'],
      ['/v1/completions', '[1, 2]', 400, 'invalid_value'],
      ['/v1/completions', '{"model": "tiny"}', 400, 'missing_required_parameter'],
      ['/v1/completions', '{"model": "tiny", "prompt": "x", "n": 2}', 400, 'unsupported_parameter'],
      ['/v1/completions', '{"model": "tiny", "prompt": "x", "max_tokens": -1}', 400, 'invalid_value'],
      ['/v1/completions', '{"model": "tiny", "prompt": "x", "max_tokens": 100000}', 400, 'invalid_value'],
      ['/v1/completions', '{"model": "tiny", "prompt": "x", "temperature": "hot"}', 400, 'invalid_value'],
      ['/v1/completions', '{"model": "tiny", "prompt": [1, 99999999]}', 400, 'invalid_value'],
      ['/v1/completions', '{"model": "nope", "prompt": "x"}', 404, 'model_not_found'],
      ['/v1/chat/completions', '{"model": "tiny", "messages": []}', 400, 'missing_required_parameter'],
      ['/v1/chat/completions', '{"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}', 400, 'invalid_value'],
      ['/v1/completions', `{"model": "tiny", "prompt": "${'x'.repeat(2 << 20)}"}`, 413, 'request_too_large'],
      ['/v1/nothing', '{}', 404, 'not_found'],
    ];
    for (const [path, body, status, code] of cases) {
      const r = await post(path, body);
      expect([path, body.slice(0, 60), r.status]).toEqual([path, body.slice(0, 60), status]);
      const j = (await r.json()) as { error: { code: string; message: string; type: string } };
      expect(j.error.code).toBe(code);
      expect(j.error.message.length).toBeGreaterThan(5);
    }
    expect((await fetch(`${base}/v1/completions`)).status).toBe(405);
    expect((await fetch(`${base}/health`)).status).toBe(200);
    await expect(client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 2, temperature: 0 })).resolves.toBeDefined();
  });

  it('a client that disconnects mid-stream frees its row at once', async () => {
    const finished = (reason: string) => server.metrics.finished.get({ finished_reason: reason });
    // The worker makes the 200 tokens in ~0.1-0.2 s; a host that stalls this thread that long lets
    // it finish before the abort lands (then the server rightly finishes 'length'), so the
    // disconnect is tried until it lands mid-stream, at most 3 times.
    let cancelledMidStream = false;
    for (let attempt = 0; attempt < 3 && !cancelledMidStream; attempt++) {
      const ac = new AbortController();
      const before = { cancelled: finished('cancelled'), length: finished('length') };
      const s = await client.completions.create({ model: 'beta', prompt: PROMPTS[0], max_tokens: 200, ignore_eos: true, temperature: 0, stream: true, return_token_ids: true } as OpenAI.CompletionCreateParamsStreaming, { signal: ac.signal });
      let chunks = 0;
      try {
        for await (const _ of s) {
          if (++chunks < 2) continue;
          ac.abort(); // tokens come a step's worth at a time, so more chunks may already be parsed
          break;
        }
      } catch {
        // the client's own abort ends its iteration (an error or not, depending on timing)
      }
      expect(chunks).toBe(2);
      for (let i = 0; i < 200 && finished('cancelled') === before.cancelled && finished('length') === before.length; i++) await new Promise((r) => setTimeout(r, 5));
      cancelledMidStream = finished('cancelled') === before.cancelled + 1;
      if (!cancelledMidStream) expect(finished('length')).toBe(before.length + 1);
    }
    expect(cancelledMidStream).toBe(true);
    // The row leaves the batch at once; the worker frees its row and cache before its next step.
    for (let i = 0; i < 100 && (server.scheduler.inFlight || server.scheduler.kvBytesInUse); i++) await new Promise((r) => setTimeout(r, 5));
    expect(server.scheduler.inFlight).toBe(0);
    expect(server.scheduler.kvBytesInUse).toBe(0);
  });

  it('/metrics is Prometheus text that agrees with the client', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const samples = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
      expect(m, line).not.toBeNull();
      samples.set(m![1], Number(m![2]));
    }
    expect(samples.get('lora_requests_total{endpoint="/v1/completions",status="404"}')).toBe(2);
    expect(samples.get('lora_requests_total{endpoint="/v1/completions",status="413"}')).toBe(1);
    expect(samples.get('lora_num_requests_running')).toBe(0);
    expect(samples.get('lora_num_requests_waiting')).toBe(0);
    const ttftCount = samples.get('lora_time_to_first_token_seconds_count')!;
    expect(samples.get('lora_time_to_first_token_seconds_bucket{le="+Inf"}')).toBe(ttftCount);
    expect(ttftCount).toBeGreaterThan(10);
    expect(samples.get('lora_generation_tokens_total')).toBeGreaterThan(100);
  });
});

describe('lora serve limits', () => {
  it('refuses beyond the queue with 429 and Retry-After, and checks the API key', async () => {
    const tokenizer = await OptTokenizer.fromPretrained(fx.modelDir);
    const small = createServer({ model: fx.modelDir, device: 'cpu' }, { tokenizer, modelName: 'tiny', apiKey: 'sekrit', retryAfterSec: 2, scheduler: { maxBatch: 1, maxQueue: 1 } });
    const { port } = await small.listen(0, '127.0.0.1');
    try {
      const c = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'sekrit', maxRetries: 0 });
      await expect(new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list()).rejects.toMatchObject({ status: 401 });
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => c.completions.create({ model: 'tiny', prompt: PROMPTS[0], max_tokens: 40, temperature: 0 })));
      const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as InstanceType<typeof OpenAI.APIError>);
      const served = results.filter((r) => r.status === 'fulfilled');
      expect(served.length).toBeGreaterThanOrEqual(2);
      expect(refused.length).toBeGreaterThanOrEqual(1);
      for (const e of refused) {
        expect(e.status).toBe(429);
        expect(e.headers?.get('retry-after')).toBe('2');
      }
    } finally {
      await small.close();
    }
  });
});
