// The Llama-shaped families' parameter table (LlamaModel / Qwen2Model / Qwen3Model names under
// `model.`, plus the top-level lm_head when it is not tied), in transformers' module order. q, k
// and v are separate weights (with grouped KV heads their widths differ), each its own LoRA module;
// gate and up share their input and width, so they are stacked into one [2F, C] weight (role
// gateUpW): one product and one fused LoRA over two groups.
import type { LlamaConfig } from './llama-config.js';
import type { ParamSpec, ParamTable } from './params.js';

type Spec = ParamSpec<LlamaConfig>;

const qWidth = (c: LlamaConfig) => c.numAttentionHeads * c.headDim;
const kvWidth = (c: LlamaConfig) => c.numKeyValueHeads * c.headDim;

const linear = (
  module: string, role: string, shape: (c: LlamaConfig) => [number, number], bias: (c: LlamaConfig) => boolean, stack?: { index: number; of: number; module: string },
): Spec[] => {
  const target = module.slice(module.lastIndexOf('.') + 1);
  const at = stack && { index: stack.index, of: stack.of };
  return [
    { name: `layers.{i}.${module}.weight`, shape, role: `${role}W`, quantizable: true, lora: { target, module: stack?.module ?? target }, stack: at },
    { name: `layers.{i}.${module}.bias`, shape: (c) => [shape(c)[0]], role: `${role}B`, when: bias, stack: at },
  ];
};

const norm = (name: string, role: string, width: (c: LlamaConfig) => number, when?: (c: LlamaConfig) => boolean): Spec => ({
  name: `${name}.weight`, shape: (c) => [width(c)], role, when,
});

export const LLAMA_PARAMS: ParamTable<LlamaConfig> = {
  globals: [
    { name: 'embed_tokens.weight', shape: (c) => [c.vocabSize, c.hiddenSize], role: 'embed' },
    norm('norm', 'finalNormW', (c) => c.hiddenSize),
    // Outside the base model (LlamaForCausalLM.lm_head); absent when tied to embed_tokens.
    { name: 'lm_head.weight', shape: (c) => [c.vocabSize, c.hiddenSize], role: 'lmHead', when: (c) => !c.tieWordEmbeddings },
  ],
  layer: [
    ...linear('self_attn.q_proj', 'q', (c) => [qWidth(c), c.hiddenSize], (c) => c.qkvBias),
    ...linear('self_attn.k_proj', 'k', (c) => [kvWidth(c), c.hiddenSize], (c) => c.qkvBias),
    ...linear('self_attn.v_proj', 'v', (c) => [kvWidth(c), c.hiddenSize], (c) => c.qkvBias),
    ...linear('self_attn.o_proj', 'o', (c) => [c.hiddenSize, qWidth(c)], (c) => c.oBias),
    norm('layers.{i}.self_attn.q_norm', 'qNormW', (c) => c.headDim, (c) => c.qkNorm),
    norm('layers.{i}.self_attn.k_norm', 'kNormW', (c) => c.headDim, (c) => c.qkNorm),
    ...linear('mlp.gate_proj', 'gateUp', (c) => [c.intermediateSize, c.hiddenSize], (c) => c.mlpBias, { index: 0, of: 2, module: 'gate_up' }),
    ...linear('mlp.up_proj', 'gateUp', (c) => [c.intermediateSize, c.hiddenSize], (c) => c.mlpBias, { index: 1, of: 2, module: 'gate_up' }),
    ...linear('mlp.down_proj', 'down', (c) => [c.hiddenSize, c.intermediateSize], (c) => c.mlpBias),
    norm('layers.{i}.input_layernorm', 'ln1W', (c) => c.hiddenSize),
    norm('layers.{i}.post_attention_layernorm', 'ln2W', (c) => c.hiddenSize),
  ],
  numLayers: (c) => c.numHiddenLayers,
};

/** Names under the base model that live outside it in a checkpoint (LlamaForCausalLM's own modules). */
export const TOP_LEVEL = new Set(['lm_head.weight']);
