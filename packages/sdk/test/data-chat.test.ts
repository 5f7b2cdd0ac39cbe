// Chat-form training data: messages / ShareGPT records, rendered by the model's chat template, with
// labels on assistant turns only (their content and the closing special token).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IGNORE_INDEX, makeBatches, parseTrainingRecords, prepareExamples, readTrainingRecords, tokenizeRecord, tokenizeTrainingRecord, type ChatRecord, type Example,
} from '../src/data/index.js';
import { AutoTokenizer, buildByteLevelTokenizer, JinjaChatTemplate, type PreTrainedTokenizer } from '../src/tokenizer/index.js';
import { LLAMA3_DIR, QWEN3_DIR } from './tokenizer-files.js';

const CHAT: ChatRecord = {
  messages: [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Say hi' },
    { role: 'assistant', content: 'hi' },
    { role: 'user', content: 'Now bye' },
    { role: 'assistant', content: 'Bye!' },
  ],
};

const learned = (ex: Example) => ex.inputIds.filter((_, t) => ex.labels[t] !== IGNORE_INDEX);
const unmasked = (ex: Example) => ex.labels.every((l, t) => l === IGNORE_INDEX || l === ex.inputIds[t]);

let tmp: string;
beforeAll(async () => { tmp = await mkdtemp(join(tmpdir(), 'lora-chat-')); });
afterAll(async () => { await rm(tmp, { recursive: true, force: true }); });

describe('chat records', () => {
  it('reads messages, ShareGPT conversations and Alpaca rows from one JSONL file', async () => {
    const path = join(tmp, 'mixed.jsonl');
    await writeFile(path, [
      { messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] },
      { conversations: [{ from: 'system', value: 's' }, { from: 'human', value: 'a' }, { from: 'gpt', value: 'b' }] },
      { instruction: 'i', output: 'o' },
    ].map((r) => JSON.stringify(r)).join('\n'));
    expect(await readTrainingRecords(path)).toEqual([
      { messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] },
      { messages: [{ role: 'system', content: 's' }, { role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] },
      { instruction: 'i', input: '', output: 'o' },
    ]);
  });

  it('names the record of an unknown shape, speaker or content type', () => {
    const parse = (rows: unknown[]) => () => parseTrainingRecords(JSON.stringify(rows), 'json', 'd.json');
    expect(parse([{ instruction: 'i', output: 'o' }, { prompt: 'p', completion: 'c' }])).toThrow(
      expect.objectContaining({ code: 'E_DATA', message: expect.stringMatching(/^d\.json record 1: unknown record shape \(keys: prompt, completion\)/) }),
    );
    expect(parse([{ conversations: [{ from: 'robot', value: 'x' }] }])).toThrow(expect.objectContaining({ code: 'E_DATA', message: expect.stringMatching(/record 0: conversations\[0\]: unknown speaker 'robot'/) }));
    expect(parse([{ messages: [{ role: 'user', content: [{ type: 'image' }] }] }])).toThrow(expect.objectContaining({ code: 'E_DATA', message: expect.stringMatching(/messages\[0\]: 'content' must be a string, got a list/) }));
    expect(parse([{ messages: [] }])).toThrow(expect.objectContaining({ code: 'E_DATA', message: expect.stringMatching(/non-empty list/) }));
  });
});

describe.each([
  ['Qwen3', QWEN3_DIR, '<|im_end|>'],
  ['Llama 3', LLAMA3_DIR, '<|eot_id|>'],
])('%s chat template', (_name, dir, endOfTurn) => {
  let tok: PreTrainedTokenizer;
  beforeAll(async () => { tok = await AutoTokenizer.fromFiles(dir); }, 60_000);

  it('tokenizes the rendered conversation and labels only the assistant turns and their end token', () => {
    const ex = tokenizeTrainingRecord(tok, CHAT, { maxLength: 4096 });
    // Tokenizing in segments at the turn boundaries gives the ids of the whole text.
    expect(ex.inputIds).toEqual(tok.encode(tok.chatTemplate!.render(CHAT.messages), { addSpecialTokens: false }));
    expect(unmasked(ex)).toBe(true);
    const enc = (s: string) => tok.encode(s, { addSpecialTokens: false });
    // "hi" also occurs in the user's "Say hi"; only the assistant's is labeled.
    expect(learned(ex)).toEqual([...enc(`hi${endOfTurn}`), ...enc(`Bye!${endOfTurn}`)]);
    expect(tok.decode(learned(ex))).toBe(`hi${endOfTurn}Bye!${endOfTurn}`);
  });

  it('truncates at seq, counts it, and drops a conversation cut before its first answer', () => {
    const full = tokenizeTrainingRecord(tok, CHAT, { maxLength: 4096 }).inputIds.length;
    const firstLabel = tokenizeTrainingRecord(tok, CHAT, { maxLength: 4096 }).labels.findIndex((l) => l !== IGNORE_INDEX);
    const { examples, summary } = prepareExamples(tok, [CHAT, { messages: CHAT.messages.slice(0, 3) }], { seq: full - 2 });
    expect(summary).toMatchObject({ records: 2, examples: 2, truncated: 1, droppedNoLabels: 0, longest: full });
    expect(examples[0].inputIds).toHaveLength(full - 2);
    const cut = prepareExamples(tok, [CHAT], { seq: firstLabel });
    expect(cut.summary).toMatchObject({ examples: 0, truncated: 1, droppedNoLabels: 1 });
    // The Trainer's batches count loss tokens from these labels as for Alpaca examples.
    const batch = makeBatches(examples.slice(0, 1), { batchSize: 1, seq: full, padId: tok.padTokenId })[0];
    expect(batch.lossTokens).toBe(learned(examples[0]).length);
  });
});

describe('conversations for a model without a chat template', () => {
  const tok = buildByteLevelTokenizer();

  it('train a single turn as the Alpaca record it is, with loss on the answer', () => {
    const ex = tokenizeTrainingRecord(tok, { messages: CHAT.messages.slice(0, 3) }, { maxLength: 512 });
    const alpaca = tokenizeRecord(tok, { instruction: 'Say hi', input: 'Be brief.', output: 'hi' }, { maxLength: 512, responseOnly: true });
    expect(ex).toEqual(alpaca);
  });

  it('refuse longer conversations, naming the record', () => {
    expect(() => prepareExamples(tok, [{ instruction: 'i', input: '', output: 'o' }, CHAT], { seq: 64 })).toThrow(
      expect.objectContaining({ code: 'E_DATA', message: expect.stringMatching(/^record 1: this model has no chat_template/) }),
    );
  });

  it('name the record whose messages make the template raise', () => {
    const source = "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be the user\\'s') }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}";
    const raising = { encode: tok.encode.bind(tok), eosTokenId: tok.eosTokenId, padTokenId: tok.padTokenId, chatTemplate: JinjaChatTemplate.fromConfig({ chat_template: source }, 'm/tokenizer_config.json')! };
    expect(() => prepareExamples(raising, [{ messages: CHAT.messages.slice(1, 3) }, CHAT], { seq: 64 })).toThrow(
      expect.objectContaining({ code: 'E_TOKENIZER', field: 'chat_template', message: expect.stringMatching(/^record 1: m\/tokenizer_config\.json: the chat template raised an error.*first message must be the user's/) }),
    );
  });

  it('refuse a template that leaves an assistant turn out, naming the message', () => {
    const source = "{% for m in messages %}{% if m.role != 'assistant' %}{{ m.content }}{% endif %}{% endfor %}";
    const dropping = { encode: tok.encode.bind(tok), eosTokenId: tok.eosTokenId, padTokenId: tok.padTokenId, chatTemplate: JinjaChatTemplate.fromConfig({ chat_template: source }, 'x')! };
    expect(() => prepareExamples(dropping, [CHAT], { seq: 64 })).toThrow(expect.objectContaining({ code: 'E_DATA', message: expect.stringMatching(/^record 0: messages\[2\] \(assistant\) does not appear/) }));
  });
});

