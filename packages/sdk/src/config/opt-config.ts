import { join } from 'node:path';
import { LoraError } from '../io/errors.js';
import { readJsonFile } from '../io/safe-file.js';
import { checkConfigBounds } from './bounds.js';

/** An OPT model's hyperparameters: transformers' OPTConfig with TypeScript names. */
export interface OptConfig {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  ffnDim: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  /** Width of the token embeddings; differs from hiddenSize only with project_in/out (opt-350m: 512). */
  wordEmbedProjDim: number;
  /** true: pre-LN with a final layernorm (opt-125m, 1.3b…); false: opt-350m's post-LN. */
  doLayerNormBefore: boolean;
  removeFinalLayerNorm: boolean;
  activationFunction: 'relu';
  dropout: number;
  attentionDropout: number;
  activationDropout: number;
  layerdrop: number;
  initStd: number;
  padTokenId: number;
  bosTokenId: number;
  eosTokenId: number;
  enableBias: boolean;
  layerNormElementwiseAffine: boolean;
  tieWordEmbeddings: boolean;
  /** Dtype the checkpoint was saved in (`torch_dtype`), if it says. */
  torchDtype: string | undefined;
  /** hiddenSize / numAttentionHeads. */
  headDim: number;
}

/** transformers' OPTConfig defaults (they describe opt-125m). */
export const OPT_CONFIG_DEFAULTS = {
  vocab_size: 50272,
  hidden_size: 768,
  num_hidden_layers: 12,
  ffn_dim: 3072,
  max_position_embeddings: 2048,
  do_layer_norm_before: true,
  _remove_final_layer_norm: false,
  word_embed_proj_dim: null,
  dropout: 0.1,
  attention_dropout: 0.0,
  activation_dropout: 0.0,
  num_attention_heads: 12,
  activation_function: 'relu',
  layerdrop: 0.0,
  init_std: 0.02,
  pad_token_id: 1,
  bos_token_id: 2,
  eos_token_id: 2,
  enable_bias: true,
  layer_norm_elementwise_affine: true,
  tie_word_embeddings: true,
} as const;

/**
 * Validates a parsed config.json. Every problem is collected and reported at once, so fixing a
 * hand-written config takes one round, not one per field.
 */
export function parseOptConfig(json: unknown, where = 'config.json'): OptConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new LoraError('E_CONFIG', `${where}: not a JSON object`);
  const raw = json as Record<string, unknown>;
  checkConfigBounds(raw, where);
  if (raw.model_type !== 'opt') {
    throw new LoraError('E_CONFIG', `${where}: model_type is ${JSON.stringify(raw.model_type)}, but only OPT models ("opt") are supported`);
  }
  const problems: string[] = [];
  const get = <K extends keyof typeof OPT_CONFIG_DEFAULTS>(key: K): unknown => (raw[key] === undefined ? OPT_CONFIG_DEFAULTS[key] : raw[key]);
  const int = (key: keyof typeof OPT_CONFIG_DEFAULTS, min: number): number => {
    const v = get(key);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      problems.push(`${key} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
      return min;
    }
    return v;
  };
  const prob = (key: keyof typeof OPT_CONFIG_DEFAULTS): number => {
    const v = get(key);
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) {
      problems.push(`${key} must be a number in [0, 1), got ${JSON.stringify(v)}`);
      return 0;
    }
    return v;
  };
  const bool = (key: keyof typeof OPT_CONFIG_DEFAULTS): boolean => {
    const v = get(key);
    if (typeof v !== 'boolean') {
      problems.push(`${key} must be true or false, got ${JSON.stringify(v)}`);
      return false;
    }
    return v;
  };

  const hiddenSize = int('hidden_size', 1);
  const numAttentionHeads = int('num_attention_heads', 1);
  const proj = get('word_embed_proj_dim');
  const wordEmbedProjDim = proj === null ? hiddenSize : int('word_embed_proj_dim', 1);
  const activation = get('activation_function');
  if (activation !== 'relu') problems.push(`activation_function ${JSON.stringify(activation)} is not supported (OPT uses "relu")`);
  if (hiddenSize % numAttentionHeads !== 0) {
    problems.push(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numAttentionHeads}`);
  }
  const initStd = get('init_std');
  if (typeof initStd !== 'number' || !(initStd > 0)) problems.push(`init_std must be a positive number, got ${JSON.stringify(initStd)}`);
  const dtype = raw.torch_dtype ?? raw.dtype;

  const config: OptConfig = {
    vocabSize: int('vocab_size', 1),
    hiddenSize,
    numHiddenLayers: int('num_hidden_layers', 1),
    ffnDim: int('ffn_dim', 1),
    numAttentionHeads,
    maxPositionEmbeddings: int('max_position_embeddings', 1),
    wordEmbedProjDim,
    doLayerNormBefore: bool('do_layer_norm_before'),
    removeFinalLayerNorm: bool('_remove_final_layer_norm'),
    activationFunction: 'relu',
    dropout: prob('dropout'),
    attentionDropout: prob('attention_dropout'),
    activationDropout: prob('activation_dropout'),
    layerdrop: prob('layerdrop'),
    initStd: typeof initStd === 'number' ? initStd : 0.02,
    padTokenId: int('pad_token_id', 0),
    bosTokenId: int('bos_token_id', 0),
    eosTokenId: int('eos_token_id', 0),
    enableBias: bool('enable_bias'),
    layerNormElementwiseAffine: bool('layer_norm_elementwise_affine'),
    tieWordEmbeddings: bool('tie_word_embeddings'),
    torchDtype: typeof dtype === 'string' ? dtype : undefined,
    headDim: Math.floor(hiddenSize / numAttentionHeads),
  };
  for (const key of ['pad_token_id', 'bos_token_id', 'eos_token_id'] as const) {
    const id = get(key) as number;
    if (typeof id === 'number' && id >= config.vocabSize) problems.push(`${key} ${id} is outside the vocabulary (vocab_size ${config.vocabSize})`);
  }
  if (problems.length) throw new LoraError('E_CONFIG', `${where}: invalid OPT config:\n  - ${problems.join('\n  - ')}`);
  return config;
}

export async function loadOptConfig(dir: string): Promise<OptConfig> {
  const path = join(dir, 'config.json');
  return parseOptConfig(await readJsonFile(path), path);
}

/** The config.json transformers would write for this config (for exporting merged models). */
export function optConfigToJson(c: OptConfig): Record<string, unknown> {
  return {
    architectures: ['OPTForCausalLM'],
    model_type: 'opt',
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numHiddenLayers,
    ffn_dim: c.ffnDim,
    num_attention_heads: c.numAttentionHeads,
    max_position_embeddings: c.maxPositionEmbeddings,
    word_embed_proj_dim: c.wordEmbedProjDim,
    do_layer_norm_before: c.doLayerNormBefore,
    _remove_final_layer_norm: c.removeFinalLayerNorm,
    activation_function: c.activationFunction,
    dropout: c.dropout,
    attention_dropout: c.attentionDropout,
    activation_dropout: c.activationDropout,
    layerdrop: c.layerdrop,
    init_std: c.initStd,
    pad_token_id: c.padTokenId,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    enable_bias: c.enableBias,
    layer_norm_elementwise_affine: c.layerNormElementwiseAffine,
    tie_word_embeddings: c.tieWordEmbeddings,
    ...(c.torchDtype ? { torch_dtype: c.torchDtype } : {}),
    use_cache: true,
  };
}
