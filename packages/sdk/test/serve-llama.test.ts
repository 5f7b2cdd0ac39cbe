// `lora serve` on the Llama-shaped families (a tiny llama with GQA and llama3 rope scaling, a tiny
// qwen3 with QK-norm), driven by the official `openai` client on 127.0.0.1: greedy completions equal
// in-process generate() token for token (base and two adapters, streaming and not, and all of them
// in one running batch), chat rendered with the tokenizer's own Jinja chat template equals generate()
// on that rendered prompt, and an adapter made for another family is refused. The model runs in the
// server's worker thread, as `lora serve` runs it.
import { join } from 'node:path';

import { Template } from '@huggingface/jinja';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer, LlamaForCausalLM, loadChatTemplate, OptTokenizer, type LoraServer } from '../src/index.js';
import { makeServeFixture, type ServeFixture } from './serve-fixture.js';
import { writeTinyLlama } from './serve-llama-fixture.js';
import { greedyCompletion, listenWithClient } from './serve-openai-client.js';

// ChatML, as Qwen's tokenizer_config.json spells it (a system turn, then each message, then the
// assistant header when add_generation_prompt is set).
const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const PROMPTS = ['Write a function that adds two numbers.', 'Reverse a string in Python', 'def add(a, b):'];
const MAX = 16;

let fx: ServeFixture; // the OPT fixture: its byte-level tokenizer, and an OPT adapter to refuse

beforeAll(async () => {
  fx = await makeServeFixture(['opt-adapter']);
}, 60_000);
afterAll(async () => {
  await fx?.cleanup();
});

describe.each(['llama', 'qwen3'])('lora serve on a tiny %s', (family) => {
  let dir: string;
  let tokenizer: OptTokenizer;
  let server: LoraServer;
  let client: OpenAI;
  let base: string;
  const adapters: Record<string, string> = {};

  beforeAll(async () => {
    dir = writeTinyLlama(join(fx.root, family), family, { tokenizerFrom: fx.modelDir, tokenizerConfig: { chat_template: CHATML } });
    for (const [i, name] of ['one', 'two'].entries()) {
      using m = await LlamaForCausalLM.fromPretrained(dir, { device: 'cpu' });
      m.addLora({ r: 4, alpha: 16, targetModules: ['all-linear'], initLoraWeights: false, seed: 21 + i });
      adapters[name] = join(fx.root, `${family}-${name}`);
      await m.saveAdapter(adapters[name]);
    }
    tokenizer = await OptTokenizer.fromPretrained(dir);
    server = createServer({ model: dir, device: 'cpu' }, { tokenizer, chatTemplate: await loadChatTemplate(dir), modelName: family, scheduler: { maxBatch: 8, prefillChunk: 8 } });
    for (const name of ['one', 'two']) await server.adapters.load(name, adapters[name]);
    ({ base, client } = await listenWithClient(server));
  }, 60_000);

  afterAll(async () => {
    await server?.close();
  });

  /** In-process greedy generate() on this prompt with this adapter (a fresh model, as `lora generate` loads one). */
  async function reference(adapter: string | undefined, prompt: string) {
    using m = await LlamaForCausalLM.fromPretrained(dir, { device: 'cpu' });
    if (adapter) await m.loadAdapter(adapters[adapter]);
    const ids = tokenizer.encode(prompt);
    const r = await m.generate(ids, { maxNewTokens: MAX });
    return { ids: r.tokens, text: tokenizer.decode(r.tokens, { skipSpecialTokens: true }), promptTokens: ids.length };
  }

  const complete = (name: string, prompt: string, stream: boolean) => greedyCompletion(client, name, prompt, MAX, stream);

  it('greedy completions equal generate() for the base and each adapter, streaming and not', async () => {
    const seen: number[][] = [];
    for (const name of [family, 'one', 'two']) {
      const want = await reference(name === family ? undefined : name, PROMPTS[0]);
      const r = await complete(name, PROMPTS[0], false);
      expect(r.ids).toEqual(want.ids);
      expect(r.text).toBe(want.text);
      expect(r.usage).toMatchObject({ prompt_tokens: want.promptTokens, completion_tokens: want.ids.length });
      expect(r.finish).toBe(want.ids.length === MAX ? 'length' : 'stop');
      expect(await complete(name, PROMPTS[0], true)).toEqual(r);
      seen.push(want.ids);
    }
    // The base and both adapters answer differently (the adapters are really applied).
    expect(new Set(seen.map((s) => s.join())).size).toBe(3);
  });

  it('requests for the base and both adapters in one running batch each get their own output', async () => {
    const jobs = PROMPTS.flatMap((p) => [family, 'one', 'two'].map((name) => ({ p, name })));
    const want = await Promise.all(jobs.map((j) => reference(j.name === family ? undefined : j.name, j.p)));
    let maxRunning = 0;
    const probe = setInterval(() => (maxRunning = Math.max(maxRunning, server.scheduler.runningRows)), 1);
    const got = await Promise.all(jobs.map((j, i) => complete(j.name, j.p, i % 2 === 1)));
    clearInterval(probe);
    expect(got.map((g) => g.ids)).toEqual(want.map((w) => w.ids));
    expect(maxRunning).toBeGreaterThan(1);
  });

  it("chat renders the tokenizer's chat template and equals generate() on the rendered prompt", async () => {
    const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: PROMPTS[1] }, { role: 'assistant' as const, content: 'ok' }, { role: 'user' as const, content: PROMPTS[2] }];
    const rendered = new Template(CHATML).render({ messages, add_generation_prompt: true });
    expect(rendered.endsWith('<|im_start|>assistant\n')).toBe(true);
    const want = await reference('one', rendered);
    const r = await client.chat.completions.create({ model: 'one', messages, max_tokens: MAX, temperature: 0 });
    expect(r.choices[0].message).toMatchObject({ role: 'assistant', content: want.text });
    expect(r.usage).toMatchObject({ prompt_tokens: want.promptTokens, completion_tokens: want.ids.length });
    const s = await client.chat.completions.create({ model: 'one', messages, max_tokens: MAX, temperature: 0, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe(want.text);
  });

  it('refuses an adapter made for another family and keeps serving', async () => {
    const r = await fetch(`${base}/v1/load_lora_adapter`, { method: 'POST', body: JSON.stringify({ lora_name: 'opt', lora_path: fx.adapters['opt-adapter'] }) });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: { code: string } }).error.code).toMatch(/^adapter_/);
    expect((await client.models.list()).data.map((m) => m.id)).toEqual([family, 'one', 'two']);
  });
});
