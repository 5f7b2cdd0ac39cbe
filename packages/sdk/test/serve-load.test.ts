// A bounded load test on 127.0.0.1: 96 requests from 12 concurrent clients over the base and three
// adapters — non-streaming, streaming, cancelled mid-stream, malformed — against one server. Every
// valid request gets exactly what generate() gives it alone (greedy), none is lost or mixed up, the
// native memory the server allocated goes back to its idle level, and /metrics agrees with the
// client's counts.
import { native } from '@lora/core-native';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer, OptForCausalLM, OptTokenizer, type LoraServer } from '../src/index.js';
import { makeServeFixture, type ServeFixture } from './serve-fixture.js';

let fx: ServeFixture;
let model: OptForCausalLM;
let server: LoraServer;
let base = '';

const PROMPTS = ['def add(a, b):', 'Write a loop that prints 1 to 10.', 'Sort the list.', 'class Stack:'];
const NAMES = ['tiny', 'a', 'b', 'c'];
const MAX = 20;

beforeAll(async () => {
  fx = await makeServeFixture(['a', 'b', 'c']);
  model = await OptForCausalLM.fromPretrained(fx.modelDir, { device: 'cpu' });
  server = createServer(model, { tokenizer: await OptTokenizer.fromPretrained(fx.modelDir), modelName: 'tiny', scheduler: { maxBatch: 8, maxQueue: 128, prefillChunk: 16 } });
  for (const n of ['a', 'b', 'c']) await server.adapters.load(n, fx.adapters[n]);
  base = `http://127.0.0.1:${(await server.listen(0)).port}`;
}, 60_000);

afterAll(async () => {
  await server?.close();
  model?.dispose();
  await fx?.cleanup();
});

describe('lora serve under load', () => {
  it('answers 96 mixed requests from 12 clients correctly, frees everything, and counts them', async () => {
    // References: each (adapter, prompt) alone through generate(), on a separate model instance.
    const tok = await OptTokenizer.fromPretrained(fx.modelDir);
    const want = new Map<string, number[]>();
    {
      using ref = await OptForCausalLM.fromPretrained(fx.modelDir, { device: 'cpu' });
      for (const name of NAMES) {
        if (name === 'tiny') ref.removeLora();
        else await ref.loadAdapter(fx.adapters[name]);
        for (const p of PROMPTS) want.set(`${name}|${p}`, (await ref.generate(tok.encode(p), { maxNewTokens: MAX })).tokens);
      }
    }
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'x', maxRetries: 0 });
    const idle = native().memoryStats('cpu').allocated;
    const kinds = ['plain', 'stream', 'cancel', 'malformed'] as const;
    const jobs = Array.from({ length: 96 }, (_, i) => ({ kind: kinds[i % 7 === 3 ? 3 : i % 5 === 2 ? 2 : i % 2], name: NAMES[i % 4], prompt: PROMPTS[(i >> 2) % 4] }));
    const counts = { ok: 0, cancelled: 0, completedBeforeCancel: 0, malformed: 0, wrong: [] as string[] };
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const j = jobs[next++];
        const key = `${j.name}|${j.prompt}`;
        if (j.kind === 'malformed') {
          const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: `{"model": "${j.name}", "prompt": ` });
          if (r.status === 400 && ((await r.json()) as { error: { code: string } }).error.code === 'invalid_json') counts.malformed++;
          else counts.wrong.push(`malformed got ${r.status}`);
        } else if (j.kind === 'cancel') {
          const ac = new AbortController();
          const r = await fetch(`${base}/v1/completions`, {
            method: 'POST', signal: ac.signal,
            body: JSON.stringify({ model: j.name, prompt: j.prompt, max_tokens: 200, ignore_eos: true, temperature: 0, stream: true, return_token_ids: true }),
          });
          const reader = r.body!.getReader();
          let text = '';
          for (let chunks = 0; chunks < 2; chunks++) {
            const { done, value } = await reader.read();
            if (done) break;
            text += new TextDecoder().decode(value);
          }
          ac.abort();
          await reader.cancel().catch(() => {});
          if (text.includes('[DONE]')) counts.completedBeforeCancel++;
          else counts.cancelled++;
        } else {
          const params = { model: j.name, prompt: j.prompt, max_tokens: MAX, temperature: 0, return_token_ids: true };
          let ids: number[] = [];
          if (j.kind === 'plain') {
            const r = await client.completions.create(params as OpenAI.CompletionCreateParamsNonStreaming);
            ids = (r.choices[0] as unknown as { token_ids: number[] }).token_ids;
          } else {
            const s = await client.completions.create({ ...params, stream: true } as OpenAI.CompletionCreateParamsStreaming);
            for await (const c of s) ids.push(...((c.choices[0] as unknown as { token_ids?: number[] })?.token_ids ?? []));
          }
          if (JSON.stringify(ids) === JSON.stringify(want.get(key))) counts.ok++;
          else counts.wrong.push(`${j.kind} ${key}: ${ids} != ${want.get(key)}`);
        }
      }
    };
    let maxRunning = 0;
    const probe = setInterval(() => (maxRunning = Math.max(maxRunning, server.scheduler.runningRows)), 2);
    await Promise.all(Array.from({ length: 12 }, worker));
    clearInterval(probe);
    for (let i = 0; i < 200 && (server.scheduler.inFlight || server.scheduler.kvBytesInUse); i++) await new Promise((r) => setTimeout(r, 5));

    expect(counts.wrong).toEqual([]);
    const cancels = jobs.filter((j) => j.kind === 'cancel').length;
    expect(counts.ok).toBe(jobs.filter((j) => j.kind === 'plain' || j.kind === 'stream').length);
    expect(counts.malformed).toBe(jobs.filter((j) => j.kind === 'malformed').length);
    expect(counts.cancelled + counts.completedBeforeCancel).toBe(cancels);
    expect(counts.cancelled).toBe(cancels); // 200 tokens past eos: none can finish before its abort
    expect(maxRunning).toBeGreaterThanOrEqual(4);
    // Every KV cache and every step's buffers are freed.
    expect(server.scheduler.inFlight).toBe(0);
    expect(server.scheduler.kvBytesInUse).toBe(0);
    expect(native().memoryStats('cpu').allocated).toBe(idle);
    // /metrics agrees with the client.
    const m = server.metrics.requests;
    expect(m.get({ endpoint: '/v1/completions', status: '200' })).toBe(counts.ok + counts.completedBeforeCancel);
    expect(m.get({ endpoint: '/v1/completions', status: '400' })).toBe(counts.malformed);
    expect(m.get({ endpoint: '/v1/completions', status: '499' })).toBe(counts.cancelled);
    expect(server.metrics.finished.get({ finished_reason: 'cancelled' })).toBe(counts.cancelled);
  }, 120_000);
});
