// A bounded load test on 127.0.0.1, the example: 200 requests from 16 concurrent clients over
// the base and three adapters — non-streaming, streaming, cancelled mid-stream, malformed — against
// one server running its model in a worker thread (as `lora serve` does). Every valid request gets
// exactly what generate() gives it alone (greedy), none is lost or mixed up, the native memory goes
// back to its idle level exactly and the process's RSS to its idle level (within the heaps' slack,
// measured below), and /metrics agrees with the client's counts.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { native } from '@lora/core-native';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer, OptForCausalLM, OptTokenizer, type LoraServer } from '../src/index.js';
import { makeServeFixture, type ServeFixture } from './serve-fixture.js';

let fx: ServeFixture;
let server: LoraServer;
let base = '';

const PROMPTS = ['def add(a, b):', 'Write a loop that prints 1 to 10.', 'Sort the list.', 'class Stack:'];
const NAMES = ['tiny', 'a', 'b', 'c'];
const MAX = 20;
const CLIENTS = 16;
const REQUESTS = 200;

beforeAll(async () => {
  fx = await makeServeFixture(['a', 'b', 'c']);
  server = createServer({ model: fx.modelDir, device: 'cpu' }, { tokenizer: await OptTokenizer.fromPretrained(fx.modelDir), modelName: 'tiny', scheduler: { maxBatch: 8, maxQueue: 128, prefillChunk: 16 } });
  for (const n of ['a', 'b', 'c']) await server.adapters.load(n, fx.adapters[n]);
  base = `http://127.0.0.1:${(await server.listen(0)).port}`;
}, 60_000);

afterAll(async () => {
  await server?.close();
  await fx?.cleanup();
});

type Kind = 'plain' | 'stream' | 'cancel' | 'bad-json' | 'bad-model' | 'bad-param';
// What each malformed kind sends and must get back.
const MALFORMED: Record<string, { body: (name: string) => string; status: number; code: string }> = {
  'bad-json': { body: (name) => `{"model": "${name}", "prompt": `, status: 400, code: 'invalid_json' },
  'bad-model': { body: () => JSON.stringify({ model: 'no-such-adapter', prompt: 'x' }), status: 404, code: 'model_not_found' },
  'bad-param': { body: (name) => JSON.stringify({ model: name, prompt: 'x', temperature: 'hot' }), status: 400, code: 'invalid_value' },
};

function kindOf(i: number): Kind {
  if (i % 10 === 3) return 'cancel';
  if (i % 13 === 5) return (['bad-json', 'bad-model', 'bad-param'] as const)[i % 3];
  return i % 2 ? 'stream' : 'plain';
}

// A full collection before each RSS reading, so the reading is what is still referenced (vitest's
// forks run without --expose-gc; the flag can be set at run time and gc() read from a new context).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * Polls until the worker has freed every row (its counters arrive with its messages) and the server
 * has counted `sent` completions requests (a cancelled stream is counted when the server sees its
 * socket close, which on a busy host can come after the client has moved on).
 */
async function settled(sent: number): Promise<void> {
  const counted = () => [...server.metrics.requests.entries()].reduce((a, [l, v]) => a + (l.endpoint === '/v1/completions' ? v : 0), 0);
  for (let i = 0; i < 1000 && (server.scheduler.inFlight || server.scheduler.kvBytesInUse || server.scheduler.runningRows || counted() < sent); i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** /metrics as a map of sample → value. */
async function scrape(): Promise<Map<string, number>> {
  const samples = new Map<string, number>();
  for (const line of (await (await fetch(`${base}/metrics`)).text()).split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) samples.set(m[1], Number(m[2]));
  }
  return samples;
}

describe('lora serve under load', () => {
  it(`answers ${REQUESTS} mixed requests from ${CLIENTS} clients correctly, frees everything, and counts them`, async () => {
    // References: each (adapter, prompt) alone through generate(), on a model in this thread.
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
    const jobs = Array.from({ length: REQUESTS }, (_, i) => ({ kind: kindOf(i), name: NAMES[i % 4], prompt: PROMPTS[(i >> 2) % 4] }));
    const counts = { ok: 0, cancelled: 0, completedBeforeCancel: 0, malformed: { 400: 0, 404: 0 } as Record<number, number>, wrong: [] as string[] };
    const run = async (j: (typeof jobs)[number]) => {
      const key = `${j.name}|${j.prompt}`;
      if (j.kind in MALFORMED) {
        const m = MALFORMED[j.kind];
        const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: m.body(j.name) });
        const code = ((await r.json()) as { error: { code: string } }).error.code;
        if (r.status === m.status && code === m.code) counts.malformed[r.status]++;
        else counts.wrong.push(`${j.kind} got ${r.status} ${code}`);
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
    };
    let sent = 0;
    const load = async (list: typeof jobs) => {
      let next = 0;
      const clientLoop = async () => {
        while (next < list.length) await run(list[next++]);
      };
      await Promise.all(Array.from({ length: CLIENTS }, clientLoop));
      sent += list.length;
      await settled(sent);
    };

    // Idle level: after one warm-up round of the same load (the first round grows the JS heaps, the
    // worker's malloc arena and the HTTP agents' pools once: RSS +18 MiB here), measured the same
    // way as after the load.
    await load(jobs);
    const before = await scrape();
    gc();
    const idleNative = native().memoryStats('cpu').allocated;
    const idleRss = process.memoryUsage().rss;
    Object.assign(counts, { ok: 0, cancelled: 0, completedBeforeCancel: 0, malformed: { 400: 0, 404: 0 } });
    counts.wrong.length = 0;

    let maxRunning = 0;
    const probe = setInterval(() => (maxRunning = Math.max(maxRunning, server.scheduler.runningRows)), 2);
    const t0 = performance.now();
    await load(jobs);
    const wallMs = performance.now() - t0;
    clearInterval(probe);
    const after = await scrape();
    gc();
    const nativeAfter = native().memoryStats('cpu').allocated;
    const rssAfter = process.memoryUsage().rss;
    console.log(`load: ${REQUESTS} requests from ${CLIENTS} clients in ${Math.round(wallMs)} ms; most rows at once ${maxRunning}; ` +
      `native allocated ${idleNative} -> ${nativeAfter} B; RSS ${(idleRss / 2 ** 20).toFixed(1)} -> ${(rssAfter / 2 ** 20).toFixed(1)} MiB`);

    expect(counts.wrong).toEqual([]);
    const n = (k: Kind) => jobs.filter((j) => j.kind === k).length;
    expect(counts.ok).toBe(n('plain') + n('stream'));
    expect(counts.malformed[400]).toBe(n('bad-json') + n('bad-param'));
    expect(counts.malformed[404]).toBe(n('bad-model'));
    expect(counts.cancelled).toBe(n('cancel')); // the client aborts after two chunks of 200: it never reads the end
    expect(maxRunning).toBeGreaterThanOrEqual(4);
    // Every KV cache and every step's buffers are freed, in the worker too (the addon's allocator
    // counts the whole process).
    expect(server.scheduler).toMatchObject({ inFlight: 0, kvBytesInUse: 0, runningRows: 0, queueDepth: 0 });
    expect(nativeAfter).toBe(idleNative);
    // RSS back at the idle level: a round after the warm-up moved it by +1.2 to +2.9 MiB on an idle
    // host and +4.9 to +5.9 MiB at load ~4 (the worker's JS heap is collected when V8 decides; this
    // thread's is collected above), so the bound is 16 MiB: a coarse guard against what the native
    // count does not see (JS-side request state kept per request, a model loaded again). Leaked KV
    // caches or step buffers show exactly in the native count above.
    expect(rssAfter - idleRss).toBeLessThan(16 * 2 ** 20);
    // /metrics agrees with the client (differences over this round). A cancelled stream is a 499
    // when the server sees the socket close before it has written the last token; on a busy host
    // the worker can finish all 200 tokens into the socket buffers before the client's abort lands
    // (seen: 9 of 20), and the server then rightly counts a 200 that the client never read.
    const d = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    const ok = d('lora_requests_total{endpoint="/v1/completions",status="200"}');
    const gone = d('lora_requests_total{endpoint="/v1/completions",status="499"}');
    expect(ok + gone).toBe(counts.ok + n('cancel'));
    expect(ok).toBeGreaterThanOrEqual(counts.ok);
    expect(gone).toBeGreaterThan(0);
    expect(d('lora_request_success_total{finished_reason="cancelled"}')).toBe(gone);
    expect(d('lora_requests_total{endpoint="/v1/completions",status="400"}')).toBe(counts.malformed[400]);
    expect(d('lora_requests_total{endpoint="/v1/completions",status="404"}')).toBe(counts.malformed[404]);
    const generated = [...jobs.filter((j) => j.kind === 'plain' || j.kind === 'stream')].reduce((a, j) => a + want.get(`${j.name}|${j.prompt}`)!.length, 0);
    expect(d('lora_generation_tokens_total')).toBeGreaterThanOrEqual(generated); // plus the cancelled streams' tokens
    expect(after.get('lora_num_requests_running')).toBe(0);
    expect(after.get('lora_num_requests_waiting')).toBe(0);
    expect(after.get('lora_kv_cache_bytes')).toBe(0);
  }, 120_000);
});
