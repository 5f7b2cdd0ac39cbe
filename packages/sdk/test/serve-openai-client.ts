// The official `openai` client against a LoraServer on 127.0.0.1, for the serve tests: start
// listening with a client attached, and one greedy completion with its token ids (vLLM's
// return_token_ids), streamed or not, in one shape so that the two can be compared whole.
import OpenAI from 'openai';

import type { LoraServer } from '../src/index.js';

/** Listens on a free port of 127.0.0.1; the server's base URL and a client for its /v1 (no retries). */
export async function listenWithClient(server: LoraServer): Promise<{ base: string; client: OpenAI }> {
  const { port } = await server.listen(0, '127.0.0.1');
  const base = `http://127.0.0.1:${port}`;
  return { base, client: new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 }) };
}

/** A greedy completion of `maxTokens` through the client; streamed chunks joined (text, ids, finish, usage). */
export async function greedyCompletion(client: OpenAI, model: string, prompt: string, maxTokens: number, stream: boolean) {
  const params = { model, prompt, max_tokens: maxTokens, temperature: 0, return_token_ids: true };
  type Choice = { text: string; finish_reason: string | null; token_ids?: number[] };
  if (!stream) {
    const r = await client.completions.create(params as OpenAI.CompletionCreateParamsNonStreaming);
    const c = r.choices[0] as Choice;
    return { text: c.text, ids: c.token_ids, finish: c.finish_reason, usage: r.usage };
  }
  const s = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } } as OpenAI.CompletionCreateParamsStreaming);
  let text = '';
  const ids: number[] = [];
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of s) {
    const c = chunk.choices[0] as Choice | undefined;
    text += c?.text ?? '';
    ids.push(...(c?.token_ids ?? []));
    finish = c?.finish_reason ?? finish;
    usage = chunk.usage ?? usage;
  }
  return { text, ids, finish, usage };
}
