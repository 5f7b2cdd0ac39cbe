// `lora serve` runs model steps in a worker thread: the main thread's event loop keeps ticking while
// long steps run (measured against the cooperative in-thread path on the same workload), new
// connections and cancels are answered without waiting for a step, a worker that dies fails its
// requests with OpenAI-shaped 500s and leaves the process serving 503s, loading errors arrive as
// LoraErrors with their codes, and a loaded model still runs in-thread with the same tokens.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { native } from '@lora/core-native';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer, ensureTinyModel, LoraError, OptForCausalLM, OptTokenizer, syntheticCodeInstructions, WorkerBackend, type LoraServer, type RequestHandle } from '../src/index.js';
import { makeServeFixture, type ServeFixture } from './serve-fixture.js';

let fx: ServeFixture;
beforeAll(async () => {
  fx = await makeServeFixture(['a']);
}, 60_000);
afterAll(async () => {
  await fx?.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const post = (url: string, body: unknown, signal?: AbortSignal) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });

describe('the event loop during model steps', () => {
  // Big enough that one 512-token prefill chunk is a long step (~0.2 s on 2 cores), small enough to
  // write in a second: OPT, hidden 768, ffn 3072, 4 layers.
  let dir = '';
  beforeAll(async () => {
    const records = syntheticCodeInstructions(16, 2);
    dir = (await ensureTinyModel(join(fx.root, 'wide'), records, { hidden: 768, ffn: 3072, layers: 4, heads: 12, embedDim: 768, merges: 50, maxPositions: 640, warmupRounds: 0 })).dir;
  }, 120_000);

  /** Six 512-token prompts prefilled in 512-token chunks and decoded, while this thread ticks every 10 ms and probes the server. */
  async function measure(server: LoraServer, steps: number[]) {
    const { port } = await server.listen(0);
    const base = `http://127.0.0.1:${port}`;
    const prompt = Array.from({ length: 512 }, (_, i) => 3 + ((i * 7) % 40));
    await post(`${base}/v1/completions`, { model: 'wide', prompt: prompt.slice(0, 8), max_tokens: 2 }).then((r) => r.json()); // warm-up
    steps.length = 0;
    let last = performance.now();
    let worstGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      worstGap = Math.max(worstGap, now - last);
      last = now;
    }, 10);
    const work = Promise.all(Array.from({ length: 6 }, () => post(`${base}/v1/completions`, { model: 'wide', prompt, max_tokens: 4, ignore_eos: true }).then((r) => r.json())));
    await sleep(50);
    // While steps run: /health, a new stream's first byte (its headers), and that stream's cancel.
    const health: number[] = [];
    const firstByte: number[] = [];
    const cancel: number[] = [];
    for (let i = 0; i < 4; i++) {
      let t = performance.now();
      await fetch(`${base}/health`);
      health.push(performance.now() - t);
      const ac = new AbortController();
      const cancelled = server.metrics.finished.get({ finished_reason: 'cancelled' });
      t = performance.now();
      const r = await post(`${base}/v1/completions`, { model: 'wide', prompt: prompt.slice(0, 16), max_tokens: 64, stream: true }, ac.signal);
      firstByte.push(performance.now() - t);
      expect(r.status).toBe(200);
      t = performance.now();
      ac.abort();
      while (server.metrics.finished.get({ finished_reason: 'cancelled' }) === cancelled && performance.now() - t < 5000) await new Promise((r) => setImmediate(r));
      cancel.push(performance.now() - t);
      await sleep(30);
    }
    const answers = (await work) as { choices: { text: string }[] }[];
    clearInterval(ticker);
    expect(answers.map((a) => a.choices.length)).toEqual([1, 1, 1, 1, 1, 1]);
    const round = (xs: number[]) => xs.map((x) => Math.round(x));
    return { worstGap, longestStep: Math.max(...steps), steps: steps.length, health: round(health), firstByte: round(firstByte), cancel: round(cancel) };
  }

  it('keeps ticking while the worker runs long steps; answers probes and cancels without waiting for one', async () => {
    const o = { scheduler: { maxBatch: 8, prefillChunk: 512 }, modelName: 'wide' };
    const tokenizer = await OptTokenizer.fromPretrained(dir);
    const inThreadSteps: number[] = [];
    const workerSteps: number[] = [];
    // Before: the cooperative path (a loaded model stepped on this thread, yielding after each layer).
    const model = await OptForCausalLM.fromPretrained(dir, { device: 'cpu' });
    const inThread = createServer(model, { ...o, tokenizer, onStep: (_r, _t, ms) => inThreadSteps.push(ms) });
    let before;
    try {
      before = await measure(inThread, inThreadSteps);
    } finally {
      await inThread.close();
      model.dispose();
    }
    // After: the worker thread (what lora serve runs).
    const worker = createServer({ model: dir, device: 'cpu' }, { ...o, tokenizer, onStep: (_r, _t, ms) => workerSteps.push(ms) });
    let after;
    try {
      after = await measure(worker, workerSteps);
    } finally {
      await worker.close();
    }
    console.log(`event loop, in-thread: ${JSON.stringify(before)}`);
    console.log(`event loop, worker:    ${JSON.stringify(after)}`);
    expect(after.longestStep).toBeGreaterThan(60); // the workload really has long steps
    // The 10 ms timer's worst gap, the probes and the cancels stay well under one step. Seen alone:
    // gap 13.6 ms, probes 1-10 ms, steps up to 179 ms; beside other test files (load ~4 on 2 cores)
    // the host deschedules this thread too: gap 151-207 ms against steps of 660-700 ms, probes 2-46 ms.
    expect(after.worstGap).toBeLessThan(Math.max(40, after.longestStep / 2));
    for (const ms of [...after.health, ...after.firstByte, ...after.cancel]) expect(ms).toBeLessThan(Math.max(40, after.longestStep / 2));
  }, 180_000);
});

describe('the model worker', () => {
  it('a crash fails the requests in it with 500s; the process keeps serving (503)', async () => {
    const before = native().memoryStats('cpu').allocated;
    const server = createServer({ model: fx.modelDir, device: 'cpu' }, { tokenizer: await OptTokenizer.fromPretrained(fx.modelDir), modelName: 'tiny', restartWorker: false });
    try {
      const { port } = await server.listen(0);
      const base = `http://127.0.0.1:${port}`;
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'x', maxRetries: 0 });
      const body = { model: 'tiny', prompt: 'def add(a, b):', max_tokens: 240, ignore_eos: true };
      const plain = client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming).then(() => 'finished', (e: InstanceType<typeof OpenAI.APIError>) => e);
      const stream = await post(`${base}/v1/completions`, { ...body, stream: true }); // resolves at the headers, sent at once
      await (server.backend as WorkerBackend).worker.terminate(); // as if the worker died mid-generation (240 steps take ~0.1 s)
      let text = '';
      const reader = stream.body!.getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
      expect(text).toMatch(/"code":"model_worker_failed"/);
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      expect(await plain).toMatchObject({ status: 500, code: 'model_worker_failed', type: 'server_error' });
      expect((await fetch(`${base}/health`)).status).toBe(503);
      await expect(client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 2 })).rejects.toMatchObject({ status: 503, code: 'model_unavailable' });
      expect((await fetch(`${base}/metrics`)).status).toBe(200);
    } finally {
      await server.close();
    }
    // The dead worker's tensors were freed with its thread (its environment's finalizers).
    expect(native().memoryStats('cpu').allocated).toBe(before);
  });

  it('after a crash a new worker takes over, with the adapters that were served', async () => {
    const before = native().memoryStats('cpu').allocated;
    const server = createServer({ model: fx.modelDir, device: 'cpu' }, { tokenizer: await OptTokenizer.fromPretrained(fx.modelDir), modelName: 'tiny' });
    try {
      await server.adapters.load('a', fx.adapters.a);
      const { port } = await server.listen(0);
      const base = `http://127.0.0.1:${port}`;
      const complete = async () => {
        const r = await post(`${base}/v1/completions`, { model: 'a', prompt: 'Sort the list.', max_tokens: 12, temperature: 0, return_token_ids: true });
        return { status: r.status, ids: ((await r.json()) as { choices?: { token_ids: number[] }[] }).choices?.[0].token_ids };
      };
      const first = await complete();
      expect(first.status).toBe(200);
      const dead = server.backend as WorkerBackend;
      await dead.worker.terminate();
      let health = 0;
      for (let i = 0; i < 300 && health !== 200; i++) {
        await sleep(20);
        health = (await fetch(`${base}/health`)).status;
      }
      expect(health).toBe(200);
      expect(server.backend).not.toBe(dead);
      expect(await complete()).toEqual(first); // same adapter, same greedy tokens
      expect(await (await fetch(`${base}/metrics`)).text()).toMatch(/^lora_worker_restarts_total 1$/m);
    } finally {
      await server.close();
    }
    expect(native().memoryStats('cpu').allocated).toBe(before);
  });

  it('a model that cannot be loaded rejects ready() and listen() with its LoraError code', async () => {
    const bad = join(fx.root, 'bad-model');
    mkdirSync(bad, { recursive: true });
    writeFileSync(join(bad, 'config.json'), JSON.stringify({ model_type: 'bert' }));
    const tokenizer = await OptTokenizer.fromPretrained(fx.modelDir);
    const server = createServer(bad, { tokenizer });
    await expect(server.ready()).rejects.toSatisfy((e) => e instanceof LoraError && e.code === 'E_CONFIG' && /model_type "bert" is not supported/.test(e.message));
    await expect(server.listen(0)).rejects.toMatchObject({ code: 'E_CONFIG' });
    await server.close();
    const missing = createServer({ model: join(fx.root, 'no-such-model'), device: 'cpu' }, { tokenizer });
    await expect(missing.ready()).rejects.toBeInstanceOf(LoraError);
    await missing.close();
    expect(() => createServer(fx.modelDir, { tokenizer, engine: {} as never })).toThrow(/custom engine runs in this thread/);
  });

  it('close() frees everything the worker allocated (model, adapter, caches)', async () => {
    const before = native().memoryStats('cpu').allocated; // the addon's allocator counts every thread
    const server = createServer({ model: fx.modelDir, device: 'cpu' }, { tokenizer: await OptTokenizer.fromPretrained(fx.modelDir), modelName: 'tiny' });
    await server.adapters.load('a', fx.adapters.a);
    const { port } = await server.listen(0);
    const r = await post(`http://127.0.0.1:${port}/v1/completions`, { model: 'a', prompt: 'Sort the list.', max_tokens: 8 });
    expect(r.status).toBe(200);
    expect(native().memoryStats('cpu').allocated).toBeGreaterThan(before);
    await server.close();
    expect(native().memoryStats('cpu').allocated).toBe(before);
  });

  it('a paused row makes no progress until resumed, and its tokens are unchanged (backpressure)', async () => {
    const backend = new WorkerBackend(
      { source: fx.modelDir, load: { device: 'cpu' }, baseName: 'tiny', engine: {}, scheduler: { maxBatch: 4, prefillChunk: 16, kvBudgetBytes: 2 ** 30 } },
      { maxQueue: 8 },
    );
    try {
      await backend.ready();
      const prompt = (await OptTokenizer.fromPretrained(fx.modelDir)).encode('def add(a, b):');
      const sampling = { temperature: 0, topP: 1, topK: 0, seed: 0, maxTokens: 60, stopTokenIds: [] };
      const straight = await backend.submit({ prompt, sampling, signal: new AbortController().signal, onToken: () => {} }).outcome;
      let seen = 0;
      const h: RequestHandle = backend.submit({ prompt, sampling, signal: new AbortController().signal, onToken: () => void ++seen });
      h.pause(); // reaches the worker right behind the submit: at most the step already begun runs
      await sleep(200);
      const paused = seen;
      await sleep(200);
      expect(seen).toBe(paused); // the worker skips the row's steps
      expect(paused).toBeLessThanOrEqual(2);
      expect(backend.counters).toMatchObject({ runningRows: 1, inFlight: 1 }); // it keeps its row and cache
      h.resume();
      const resumed = await h.outcome;
      expect(resumed.finishReason).toBe('length');
      expect(resumed.tokens).toEqual(straight.tokens);
    } finally {
      await backend.close();
    }
  });

  it('a loaded model runs in-thread (the cooperative path) with the worker path tokens', async () => {
    const tokenizer = await OptTokenizer.fromPretrained(fx.modelDir);
    using model = await OptForCausalLM.fromPretrained(fx.modelDir, { device: 'cpu' });
    const servers = [createServer(model, { tokenizer, modelName: 'tiny' }), createServer({ model: fx.modelDir, device: 'cpu' }, { tokenizer, modelName: 'tiny' })];
    try {
      const got = [];
      for (const s of servers) {
        await s.adapters.load('a', fx.adapters.a);
        const { port } = await s.listen(0);
        const r = await post(`http://127.0.0.1:${port}/v1/completions`, { model: 'a', prompt: 'Sort the list.', max_tokens: 16, temperature: 0, return_token_ids: true });
        got.push(((await r.json()) as { choices: { token_ids: number[] }[] }).choices[0].token_ids);
      }
      expect(got[0].length).toBeGreaterThan(0);
      expect(got[1]).toEqual(got[0]);
    } finally {
      for (const s of servers) await s.close();
    }
  });
});
