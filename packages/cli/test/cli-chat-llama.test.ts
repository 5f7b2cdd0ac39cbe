// `lora train`, `generate` and `eval` on a Llama-shaped folder (a tiny random qwen3 with a byte-level
// tokenizer.json and a ChatML chat_template): the CLI picks the tokenizer by the folder
// (tokenizer.json → @huggingface/tokenizers) and the family by config.json, and trains on chat
// records (messages and ShareGPT conversations) with loss on the assistant turns.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { beforeAll, describe, expect, it } from 'vitest';

import { BYTE_TO_CHAR, encodeSafetensors, expandParams, LLAMA_PARAMS, paramShapes, parseLlamaConfig, seededRandom } from '@lora/sdk';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'lora-chat-cli-'));
const model = join(dir, 'qwen3-tiny');
const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
const CHATML = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Byte-level BPE with no merges: ids 0-255 are the bytes, then the ChatML specials. */
function writeTokenizer(): void {
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[BYTE_TO_CHAR[b]] = b;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true };
  writeFileSync(join(model, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null, normalizer: null, pre_tokenizer: byteLevel, post_processor: null, decoder: byteLevel,
    added_tokens: SPECIALS.map((content, i) => ({ id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    model: { type: 'BPE', vocab, merges: [], dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false },
  }));
  writeFileSync(join(model, 'tokenizer_config.json'), JSON.stringify({ bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', chat_template: CHATML }));
}

function writeModel(): void {
  const config = {
    model_type: 'qwen3', hidden_act: 'silu', rms_norm_eps: 1e-6, max_position_embeddings: 256, eos_token_id: 258, vocab_size: 264, num_hidden_layers: 2,
    hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, intermediate_size: 24, tie_word_embeddings: true, rope_theta: 10000, torch_dtype: 'float32',
  };
  const shapes = paramShapes(expandParams(LLAMA_PARAMS, parseLlamaConfig(config)));
  const rand = seededRandom(7);
  const tensors = new Map();
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, () => (name.includes('norm') ? 1 : (rand() - 0.5) * 0.1));
    tensors.set(name === 'lm_head.weight' ? name : `model.${name}`, { dtype: 'F32', shape, data });
  }
  writeFileSync(join(model, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  writeFileSync(join(model, 'config.json'), JSON.stringify(config));
}

function lora(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const chat = join(dir, 'chat.jsonl');
const alpaca = join(dir, 'alpaca.jsonl');
beforeAll(() => {
  mkdirSync(model);
  writeTokenizer();
  writeModel();
  const rows = Array.from({ length: 16 }, (_, i) => {
    const [a, b] = [i % 7, (i * 3) % 5];
    return i % 2
      ? { messages: [{ role: 'system', content: 'Add.' }, { role: 'user', content: `${a}+${b}` }, { role: 'assistant', content: String(a + b) }] }
      : { conversations: [{ from: 'human', value: `${a}+${b}` }, { from: 'gpt', value: String(a + b) }, { from: 'human', value: 'again' }, { from: 'gpt', value: String(a + b) }] };
  });
  writeFileSync(chat, rows.map((r) => JSON.stringify(r)).join('\n'));
  writeFileSync(alpaca, [0, 1, 2].map((i) => JSON.stringify({ instruction: `${i}+1`, input: '', output: String(i + 1) })).join('\n'));
});

describe('the CLI on a Llama-shaped folder with tokenizer.json and a chat template', () => {
  it('trains on chat records, then generates and evaluates with the folder\'s tokenizer', () => {
    const out = join(dir, 'run');
    const t = lora(['train', '--model', model, '--data', chat, '--out', out, '--batch', '4', '--seq', '64', '--split', '1', '--steps', '4', '--lr', '1e-2', '--device', 'cpu']);
    expect(t.stderr).toMatch(/16 records → 16 training examples/);
    expect(t.status, t.stderr).toBe(0);
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    const losses = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { loss?: number }).filter((e) => e.loss !== undefined);
    expect(losses.length).toBeGreaterThan(0);
    for (const e of losses) expect(Number.isFinite(e.loss)).toBe(true);

    // 1 special + "user\nhi" (7 bytes) + 1 special + "\n" + 1 special + "assistant\n" (10 bytes) = 21 ids:
    // the specials are single tokens, so the prompt went through tokenizer.json.
    const g = lora(['generate', '--model', model, '--adapter', out, '--prompt', '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n', '--max-new-tokens', '4', '--json', '--device', 'cpu']);
    expect(g.status, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout)).toMatchObject({ tokensIn: 21 });

    const e = lora(['eval', '--model', model, '--data', alpaca, '--split', '0', '--max-new-tokens', '4', '--metrics', 'rouge', '--out', join(dir, 'eval'), '--device', 'cpu']);
    expect(e.status, e.stderr).toBe(0);
    expect(readFileSync(join(dir, 'eval', 'traces.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3);
  }, 120_000);

  it('names the record of an unknown shape', () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, `${JSON.stringify({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] })}\n${JSON.stringify({ prompt: 'p', completion: 'c' })}\n`);
    const r = lora(['train', '--model', model, '--data', bad, '--out', join(dir, 'bad-run'), '--steps', '1', '--device', 'cpu']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/bad\.jsonl line 2: unknown record shape/);
  });
});
