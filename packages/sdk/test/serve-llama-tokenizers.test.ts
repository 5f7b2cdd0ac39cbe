// `lora serve` with the real tokenizers of the families it serves: Qwen3's and Llama 3's original
// tokenizer.json + tokenizer_config.json (their own Jinja chat templates) beside tiny random
// qwen3 / llama weights of their vocabulary sizes. A chat request renders the model's template,
// and the answer equals in-process greedy generate() on the prompt the tokenizer's own renderer
// (tokenizer/chat-template.ts) gives for the same messages - token for token.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { AutoTokenizer, createServer, LlamaForCausalLM, loadChatTemplate } from '../src/index.js';
import { writeTinyLlama } from './serve-llama-fixture.js';
import { listenWithClient } from './serve-openai-client.js';
import { LLAMA3_DIR, QWEN3_DIR } from './tokenizer-files.js';

const tmp = mkdtempSync(join(tmpdir(), 'lora-serve-tok-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const MAX = 8;

// Tied heads keep the random 2-layer models small (vocab × 32 floats once).
const CASES = [
  { family: 'qwen3', tokenizer: QWEN3_DIR, config: { vocab_size: 151936, bos_token_id: 151643, eos_token_id: 151645 } },
  { family: 'llama', tokenizer: LLAMA3_DIR, config: { vocab_size: 128256, bos_token_id: 128000, eos_token_id: 128009, tie_word_embeddings: true } },
];

describe.each(CASES)("lora serve with $family's own tokenizer and chat template", ({ family, tokenizer: from, config }) => {
  it('a chat completion equals generate() on the tokenizer-rendered prompt, streaming and not', async () => {
    const dir = writeTinyLlama(join(tmp, family), family, { tokenizerFrom: from, config });
    const tok = await AutoTokenizer.fromPretrained(dir);
    expect(tok.chatTemplate).toBeDefined();
    using model = await LlamaForCausalLM.fromPretrained(dir, { device: 'cpu' });
    const server = createServer({ model: dir, device: 'cpu' }, { tokenizer: tok, chatTemplate: await loadChatTemplate(dir), modelName: family });
    try {
      const { client } = await listenWithClient(server);
      const messages = [{ role: 'system' as const, content: 'You are terse.' }, { role: 'user' as const, content: 'Name a prime number.' }];
      const prompt = tok.chatTemplate!.render(messages, { addGenerationPrompt: true });
      const ids = tok.encode(prompt);
      const want = await model.generate(ids, { maxNewTokens: MAX });
      const text = tok.decode(want.tokens, { skipSpecialTokens: true });
      const r = await client.chat.completions.create({ model: family, messages, max_tokens: MAX, temperature: 0 });
      expect(r.usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: want.tokens.length });
      expect(r.choices[0].message.content).toBe(text);
      const s = await client.chat.completions.create({ model: family, messages, max_tokens: MAX, temperature: 0, stream: true });
      let streamed = '';
      for await (const c of s) streamed += c.choices[0]?.delta?.content ?? '';
      expect(streamed).toBe(text);
    } finally {
      await server.close();
    }
  }, 60_000);
});
