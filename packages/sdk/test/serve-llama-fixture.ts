// Tiny random Llama-shaped models (llama with GQA, an untied head and llama3 rope scaling; qwen2 with
// q/k/v biases and one KV head; qwen3 with QK-norm and an explicit head_dim) for the serve tests,
// written as save_pretrained would; `tokenizerFrom` copies a tokenizer's files beside the weights
// (and sizes the vocabulary to a vocab.json unless the config names one).
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { expandParams, LLAMA_PARAMS, paramShapes, parseLlamaConfig } from '../src/index.js';
import { randomWeights, writeModel } from './llama-reference.js';

const base = { hidden_act: 'silu', rms_norm_eps: 1e-5, max_position_embeddings: 256, bos_token_id: 2, eos_token_id: 2, pad_token_id: 1, num_hidden_layers: 2, vocab_size: 48, torch_dtype: 'float32' };

export const LLAMA_SHAPES: Record<string, Record<string, unknown>> = {
  llama: {
    ...base, model_type: 'llama', hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48, tie_word_embeddings: false,
    rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 },
  },
  qwen2: {
    ...base, model_type: 'qwen2', hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 1, intermediate_size: 40, tie_word_embeddings: true, rope_theta: 1000,
  },
  qwen3: {
    ...base, model_type: 'qwen3', hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, intermediate_size: 48, tie_word_embeddings: true, rope_theta: 10000,
  },
};

/** Writes the tiny `family` model into dir (with the tokenizer of `tokenizerFrom`, when given); returns dir. */
export function writeTinyLlama(
  dir: string, family: string,
  o: { seed?: number; tokenizerFrom?: string; tokenizerConfig?: Record<string, unknown>; config?: Record<string, unknown> } = {},
): string {
  const json = { ...LLAMA_SHAPES[family], ...o.config };
  if (o.tokenizerFrom && !o.config?.vocab_size) {
    const vocab = Object.keys(JSON.parse(readFileSync(join(o.tokenizerFrom, 'vocab.json'), 'utf8')) as object).length;
    json.vocab_size = Math.ceil(vocab / 8) * 8;
  }
  const shapes = paramShapes(expandParams(LLAMA_PARAMS, parseLlamaConfig(json)));
  writeModel(dir, json, randomWeights(shapes, o.seed ?? family.length * 7 + 1), shapes);
  if (o.tokenizerFrom) {
    for (const f of ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']) if (existsSync(join(o.tokenizerFrom, f))) copyFileSync(join(o.tokenizerFrom, f), join(dir, f));
  }
  if (o.tokenizerConfig) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(o.tokenizerConfig));
  return dir;
}
