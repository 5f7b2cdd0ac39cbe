// `lora eval` of an OpenAI-compatible target: against our own server (completions, the training
// template's prompt) it gives the in-process evaluation's outputs, token counts and scores exactly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer, evaluateModel, evaluateTarget, OpenAITarget, OptForCausalLM, OptTokenizer, targetEndpoint, type LoraServer } from '../src/index.js';
import { makeServeFixture, type ServeFixture } from './serve-fixture.js';

let fx: ServeFixture;
let server: LoraServer;
let url = '';

const records = [
  { instruction: 'Write a function that adds two numbers.', input: '', output: 'def add(a, b):\n    return a + b' },
  { instruction: 'Reverse the string.', input: 's = "abc"', output: 'print(s[::-1])' },
  { instruction: 'Print hello.', input: '', output: 'print("hello")' },
];
const opts = { maxNewTokens: 16, metrics: ['bleu', 'rouge', 'meteor'] as const, score: { meteor: { synonyms: false } } };

beforeAll(async () => {
  fx = await makeServeFixture(['code']);
  server = createServer({ model: fx.modelDir, device: 'cpu' }, { tokenizer: await OptTokenizer.fromPretrained(fx.modelDir), modelName: 'tiny' });
  await server.adapters.load('code', fx.adapters.code);
  url = `http://127.0.0.1:${(await server.listen(0)).port}`;
}, 60_000);

afterAll(async () => {
  await server?.close();
  await fx?.cleanup();
});

describe('evaluateTarget', () => {
  it('scores our server like the in-process model (same outputs, tokens and metrics)', async () => {
    using local = await OptForCausalLM.fromPretrained(fx.modelDir, { device: 'cpu' });
    await local.loadAdapter(fx.adapters.code);
    const tok = await OptTokenizer.fromPretrained(fx.modelDir);
    const want = await evaluateModel(local, tok, records, { ...opts, metrics: [...opts.metrics] });
    const got = await evaluateTarget(new OpenAITarget({ url, model: 'code' }), records, { ...opts, metrics: [...opts.metrics] });
    expect(got.examples.map((e) => e.error)).toEqual([undefined, undefined, undefined]);
    expect(got.examples.map((e) => e.output)).toEqual(want.examples.map((e) => e.output));
    expect(got.examples.map((e) => [e.tokensIn, e.tokensOut])).toEqual(want.examples.map((e) => [e.tokensIn, e.tokensOut]));
    expect(got.summary.metrics).toEqual(want.summary.metrics);
    expect(got.summary.tokens).toEqual(want.summary.tokens);
    expect(got.summary.latency.totalMs.p50).toBeGreaterThan(0);
    expect(got.summary.config.target).toBe(`${url}/v1/completions`);
  });

  it('chat targets get the instruction as one user message (the same prompt here when input is empty)', async () => {
    const viaCompletions = await evaluateTarget(new OpenAITarget({ url, model: 'code' }), records, { ...opts, metrics: ['rouge'] });
    const viaChat = await evaluateTarget(new OpenAITarget({ url: `${url}/v1/chat/completions`, model: 'code', api: 'chat' }), records, { ...opts, metrics: ['rouge'] });
    expect(viaChat.examples.map((e) => e.error)).toEqual([undefined, undefined, undefined]);
    expect(viaChat.summary.config.target).toBe(`${url}/v1/chat/completions`);
    // Records 0 and 2 have no input: the Alpaca chat rule renders exactly the completions prompt.
    for (const i of [0, 2]) expect(viaChat.examples[i].output).toBe(viaCompletions.examples[i].output);
  });

  it('records a refusing or unreachable target per example, and normalises URLs', async () => {
    const bad = await evaluateTarget(new OpenAITarget({ url, model: 'nope', retries: 0 }), records.slice(0, 1), { ...opts, metrics: ['rouge'] });
    expect(bad.examples[0].error).toMatch(/HTTP 404.*model_not_found/);
    expect(bad.summary.errors).toBe(1);
    const down = await evaluateTarget(new OpenAITarget({ url: 'http://127.0.0.1:9/v1', model: 'x', retries: 0 }), records.slice(0, 1), { ...opts, metrics: ['rouge'] });
    expect(down.examples[0].error).toMatch(/unreachable/);
    expect(targetEndpoint('http://h:1', 'chat')).toBe('http://h:1/v1/chat/completions');
    expect(targetEndpoint('http://h:1/v1/', 'completions')).toBe('http://h:1/v1/completions');
    expect(targetEndpoint('http://h:1/v1/chat/completions', 'completions')).toBe('http://h:1/v1/completions');
    expect(() => targetEndpoint('ftp://h', 'chat')).toThrow(/http/);
  });
});
