// The hyperparameters of a Llama-shaped Hugging Face config.json (llama, qwen2, qwen3) that a GGUF
// export needs, with both spellings transformers has used (rope_theta / rope_scaling and the newer
// rope_parameters).
import { LoraError } from '../io/errors.js';

export const GGUF_ARCHS = ['llama', 'qwen2', 'qwen3'] as const;
export type GgufArch = (typeof GGUF_ARCHS)[number];

export interface RopeScaling {
  type: string;
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositions?: number;
}

export interface LlamaShapedConfig {
  arch: GgufArch;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Whether config.json spelled head_dim out (qwen3): then GGUF gets key_length/value_length. */
  explicitHeadDim: boolean;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: RopeScaling;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  raw: Record<string, unknown>;
}

const num = (c: Record<string, unknown>, key: string, fallback?: number): number => {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new LoraError('E_CONFIG', `config.json: "${key}" must be a number, got ${JSON.stringify(c[key])}`);
  return v;
};

export function parseLlamaShapedConfig(raw: Record<string, unknown>): LlamaShapedConfig {
  const arch = raw.model_type as GgufArch;
  if (!GGUF_ARCHS.includes(arch)) {
    throw new LoraError('E_CONFIG', `GGUF export supports model_type ${GGUF_ARCHS.join(', ')}; this config has ${JSON.stringify(raw.model_type)}`);
  }
  const hiddenSize = num(raw, 'hidden_size');
  const numHeads = num(raw, 'num_attention_heads');
  const numKvHeads = num(raw, 'num_key_value_heads', numHeads);
  const explicitHeadDim = typeof raw.head_dim === 'number';
  const headDim = explicitHeadDim ? (raw.head_dim as number) : hiddenSize / numHeads;
  if (!Number.isInteger(headDim) || numHeads % numKvHeads !== 0) {
    throw new LoraError('E_CONFIG', `config.json: heads do not divide (hidden_size ${hiddenSize}, num_attention_heads ${numHeads}, num_key_value_heads ${numKvHeads})`);
  }
  const rp = (raw.rope_parameters ?? {}) as Record<string, unknown>;
  const rs = (raw.rope_scaling ?? (rp.rope_type && rp.rope_type !== 'default' ? rp : undefined)) as Record<string, unknown> | undefined | null;
  let ropeScaling: RopeScaling | undefined;
  if (rs) {
    const type = String(rs.rope_type ?? rs.type ?? 'default');
    if (!['default', 'llama3', 'linear'].includes(type)) {
      throw new LoraError('E_CONFIG', `config.json: rope_scaling type "${type}" is not supported by the GGUF export (default, linear, llama3)`);
    }
    if (type !== 'default') {
      ropeScaling = {
        type,
        factor: rs.factor as number | undefined,
        lowFreqFactor: rs.low_freq_factor as number | undefined,
        highFreqFactor: rs.high_freq_factor as number | undefined,
        originalMaxPositions: rs.original_max_position_embeddings as number | undefined,
      };
    }
  }
  return {
    arch,
    vocabSize: num(raw, 'vocab_size'),
    hiddenSize,
    intermediateSize: num(raw, 'intermediate_size'),
    numLayers: num(raw, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    explicitHeadDim,
    rmsNormEps: num(raw, 'rms_norm_eps', 1e-6),
    ropeTheta: num(rp.rope_theta !== undefined ? rp : raw, 'rope_theta', 10000),
    ropeScaling,
    maxPositions: num(raw, 'max_position_embeddings', 2048),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    raw,
  };
}

/**
 * llama3 rope scaling as llama.cpp takes it: a `rope_freqs.weight` tensor of per-frequency divisors
 * (convert_hf_to_gguf's generate_extra_tensors), computed from the same formula transformers uses
 * to adjust inv_freq.
 */
export function llama3RopeFactors(c: LlamaShapedConfig): Float32Array {
  const s = c.ropeScaling!;
  const factor = s.factor ?? 8;
  const low = s.lowFreqFactor ?? 1;
  const high = s.highFreqFactor ?? 4;
  const oldCtx = s.originalMaxPositions ?? 8192;
  const out = new Float32Array(c.headDim / 2);
  for (let i = 0; i < out.length; i++) {
    const freq = 1 / Math.fround(c.ropeTheta ** ((2 * i) / c.headDim));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < oldCtx / high) out[i] = 1;
    else if (wavelen > oldCtx / low) out[i] = factor;
    else {
      const smooth = (oldCtx / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}
