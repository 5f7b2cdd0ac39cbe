// The Llama-shaped families' config.json (transformers' LlamaConfig, Qwen2Config, Qwen3Config) with
// TypeScript names: both spellings transformers has used for rotary settings (rope_theta +
// rope_scaling, and the newer rope_parameters) and for the dtype (torch_dtype, dtype). Every problem
// is collected and reported at once, with the field named.
import { join } from 'node:path';

import { checkConfigBounds } from '../config/bounds.js';
import { LoraError } from '../io/errors.js';
import { readJsonFile } from '../io/safe-file.js';
import type { CausalLMConfig } from './causal-lm.js';

export const LLAMA_MODEL_TYPES = ['llama', 'qwen2', 'qwen3'] as const;
export type LlamaModelType = (typeof LLAMA_MODEL_TYPES)[number];

/** rope_scaling as transformers applies it to inv_freq ('default': none). */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface LlamaConfig extends CausalLMConfig {
  modelType: LlamaModelType;
  intermediateSize: number;
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  tieWordEmbeddings: boolean;
  /** q/k/v biases (qwen2 always; llama/qwen3 with attention_bias). */
  qkvBias: boolean;
  /** o_proj bias (llama's attention_bias; qwen2 has none). */
  oBias: boolean;
  /** gate/up/down biases (llama's mlp_bias). */
  mlpBias: boolean;
  /** qwen3: RMSNorm over head_dim on q and k before the rotation. */
  qkNorm: boolean;
  /** Every eos id (Llama 3 instruct configs list several); eosTokenId is the first. */
  eosTokenIds: number[];
  /** The config.json as read, written back (with the fields above) on export. */
  raw: Record<string, unknown>;
}

const DEFAULT_MAX_POSITIONS: Record<LlamaModelType, number> = { llama: 2048, qwen2: 32768, qwen3: 40960 };

export function parseLlamaConfig(json: unknown, where = 'config.json'): LlamaConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new LoraError('E_CONFIG', `${where}: not a JSON object`);
  const raw = json as Record<string, unknown>;
  const modelType = raw.model_type as LlamaModelType;
  if (!LLAMA_MODEL_TYPES.includes(modelType)) {
    throw new LoraError('E_CONFIG', `${where}: model_type is ${JSON.stringify(raw.model_type)}, not one of ${LLAMA_MODEL_TYPES.join(', ')}`, { field: 'model_type' });
  }
  // Size fields far beyond any published model are refused before anything is sized by them.
  checkConfigBounds(raw, where);
  const problems: string[] = [];
  let firstField: string | undefined;
  const problem = (field: string, text: string) => {
    firstField ??= field;
    problems.push(text);
  };
  const int = (key: string, min: number, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      problem(key, `${key} must be an integer ≥ ${min}, got ${JSON.stringify(raw[key])}`);
      return min;
    }
    return v;
  };
  const positive = (src: Record<string, unknown>, key: string, fallback?: number): number => {
    const v = src[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      problem(key, `${key} must be a positive number, got ${JSON.stringify(src[key])}`);
      return 1;
    }
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'boolean') {
      problem(key, `${key} must be true or false, got ${JSON.stringify(raw[key])}`);
      return fallback;
    }
    return v;
  };

  const hiddenSize = int('hidden_size', 1);
  const heads = int('num_attention_heads', 1);
  const kvHeads = int('num_key_value_heads', 1, heads);
  if (heads % kvHeads !== 0) problem('num_key_value_heads', `num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const explicitHeadDim = raw.head_dim !== undefined && raw.head_dim !== null;
  if (!explicitHeadDim && hiddenSize % heads !== 0) problem('num_attention_heads', `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${heads} (and head_dim is not given)`);
  const headDim = explicitHeadDim ? int('head_dim', 2) : Math.floor(hiddenSize / heads);
  if (headDim % 2 !== 0) problem('head_dim', `head_dim ${headDim} must be even (rotary embeddings rotate pairs)`);
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') problem('hidden_act', `hidden_act ${JSON.stringify(act)} is not supported (SwiGLU needs "silu")`);
  const attnDropout = raw.attention_dropout ?? 0;
  if (attnDropout !== 0) problem('attention_dropout', `attention_dropout ${JSON.stringify(attnDropout)} is not supported (only 0)`);
  if (raw.use_sliding_window === true) problem('use_sliding_window', 'sliding-window attention (use_sliding_window: true) is not supported');
  if (raw.pretraining_tp !== undefined && raw.pretraining_tp !== 1) problem('pretraining_tp', `pretraining_tp ${JSON.stringify(raw.pretraining_tp)} is not supported (only 1)`);

  // Rotary settings: rope_parameters (newer transformers) or rope_theta + rope_scaling.
  const params = (raw.rope_parameters ?? undefined) as Record<string, unknown> | undefined;
  const thetaSrc = params && params.rope_theta !== undefined ? params : raw;
  const ropeTheta = positive(thetaSrc, 'rope_theta', 10000);
  const scalingRaw = (raw.rope_scaling ?? (params && (params.rope_type ?? params.type) !== undefined ? params : undefined)) as Record<string, unknown> | undefined | null;
  let ropeScaling: RopeScaling = { type: 'default' };
  if (scalingRaw) {
    const type = scalingRaw.rope_type ?? scalingRaw.type ?? 'default';
    if (type === 'llama3') {
      ropeScaling = {
        type,
        factor: positive(scalingRaw, 'factor'),
        lowFreqFactor: positive(scalingRaw, 'low_freq_factor'),
        highFreqFactor: positive(scalingRaw, 'high_freq_factor'),
        originalMaxPositions: positive(scalingRaw, 'original_max_position_embeddings'),
      };
      if (ropeScaling.highFreqFactor <= ropeScaling.lowFreqFactor) problem('rope_scaling', 'rope_scaling: high_freq_factor must exceed low_freq_factor');
    } else if (type === 'linear') {
      ropeScaling = { type, factor: positive(scalingRaw, 'factor') };
    } else if (type !== 'default') {
      problem('rope_scaling', `rope_scaling type ${JSON.stringify(type)} is not supported (default, linear, llama3)`);
    }
  }

  const vocabSize = int('vocab_size', 1);
  const eosRaw = raw.eos_token_id;
  const eosTokenIds = (Array.isArray(eosRaw) ? eosRaw : eosRaw === undefined || eosRaw === null ? [] : [eosRaw]) as unknown[];
  for (const id of eosTokenIds) if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id >= vocabSize) problem('eos_token_id', `eos_token_id ${JSON.stringify(id)} is not a token id of the vocabulary (${vocabSize})`);
  const optionalId = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= vocabSize) {
      problem(key, `${key} ${JSON.stringify(v)} is not a token id of the vocabulary (${vocabSize})`);
      return undefined;
    }
    return v;
  };
  const bos = optionalId('bos_token_id');
  const pad = optionalId('pad_token_id');
  const attentionBias = bool('attention_bias', false);
  const dtype = raw.torch_dtype ?? raw.dtype;
  const eos = (eosTokenIds[0] as number | undefined) ?? -1;
  const config: LlamaConfig = {
    modelType,
    vocabSize,
    hiddenSize,
    intermediateSize: int('intermediate_size', 1),
    numHiddenLayers: int('num_hidden_layers', 1),
    numAttentionHeads: heads,
    numKeyValueHeads: kvHeads,
    headDim,
    maxPositionEmbeddings: int('max_position_embeddings', 1, DEFAULT_MAX_POSITIONS[modelType]),
    rmsNormEps: positive(raw, 'rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling,
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    qkvBias: modelType === 'qwen2' || attentionBias,
    oBias: modelType !== 'qwen2' && attentionBias,
    mlpBias: bool('mlp_bias', false),
    qkNorm: modelType === 'qwen3',
    // Without a pad id, padding positions are masked anyway: eos (or 0) fills them.
    padTokenId: pad ?? (eos >= 0 ? eos : 0),
    bosTokenId: bos ?? -1,
    eosTokenId: eos,
    eosTokenIds: eosTokenIds as number[],
    torchDtype: typeof dtype === 'string' ? dtype : undefined,
    raw,
  };
  if (problems.length) throw new LoraError('E_CONFIG', `${where}: invalid ${modelType} config:\n  - ${problems.join('\n  - ')}`, { field: firstField });
  return config;
}

export async function loadLlamaConfig(dir: string): Promise<LlamaConfig> {
  const path = join(dir, 'config.json');
  return parseLlamaConfig(await readJsonFile(path), path);
}

/**
 * The rotary frequencies as transformers computes them in f32: inv_freq[i] = 1 / theta^(2i/D), then
 * rope_scaling's adjustment (linear: / factor; llama3: low frequencies / factor, high ones kept,
 * the band between interpolated).
 */
export function ropeInvFreq(c: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const half = c.headDim / 2;
  const f = Math.fround;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(f(c.ropeTheta) ** f(f(2 * i) / c.headDim)));
  const s = c.ropeScaling;
  if (s.type === 'linear') for (let i = 0; i < half; i++) inv[i] = f(inv[i] / s.factor);
  if (s.type === 'llama3') {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      const scaled = wavelen > lowWavelen ? f(inv[i] / s.factor) : inv[i];
      if (wavelen < highWavelen || wavelen > lowWavelen) {
        inv[i] = scaled;
      } else {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = f(((1 - smooth) * scaled) / s.factor + smooth * scaled);
      }
    }
  }
  return inv;
}

/**
 * The config.json to write for this config: the one read, with the parsed fields restated and
 * without a quantization_config (the writer of a quantized base adds its own).
 */
export function llamaConfigToJson(c: LlamaConfig): Record<string, unknown> {
  const { quantization_config: _, ...raw } = c.raw;
  return {
    ...raw,
    model_type: c.modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    max_position_embeddings: c.maxPositionEmbeddings,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: c.tieWordEmbeddings,
  };
}
