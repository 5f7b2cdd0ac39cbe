// OPT's parameter table: OPTModel's tensor names (`decoder.…`; the checkpoint may prefix `model.`),
// in transformers' module order. q/k/v are stacked into one [3C, C] weight (role qkvW) so a layer's
// three projections run as one product and one fused LoRA over three groups. lm_head is tied to
// embed_tokens and never stored.
import type { OptConfig } from '../config/opt-config.js';
import type { ParamSpec, ParamTable } from './params.js';

const layerNorm = (name: string, role: string): ParamSpec<OptConfig>[] => [
  { name: `${name}.weight`, shape: (c) => [c.hiddenSize], role: `${role}G`, when: (c) => c.layerNormElementwiseAffine },
  { name: `${name}.bias`, shape: (c) => [c.hiddenSize], role: `${role}B`, when: (c) => c.layerNormElementwiseAffine },
];

const linear = (
  name: string, role: string, shape: (c: OptConfig) => [number, number], lora: { target: string; module: string }, stack?: { index: number; of: number },
): ParamSpec<OptConfig>[] => [
  { name: `${name}.weight`, shape, role: `${role}W`, quantizable: true, lora, stack },
  { name: `${name}.bias`, shape: (c) => [shape(c)[0]], role: `${role}B`, stack, when: (c) => c.enableBias },
];

const square = (c: OptConfig): [number, number] => [c.hiddenSize, c.hiddenSize];
const attn = (proj: string, index: number) =>
  linear(`decoder.layers.{i}.self_attn.${proj}`, 'qkv', square, { target: proj, module: 'qkv' }, { index, of: 3 });

export const OPT_PARAMS: ParamTable<OptConfig> = {
  globals: [
    { name: 'decoder.embed_tokens.weight', shape: (c) => [c.vocabSize, c.wordEmbedProjDim], role: 'embed' },
    // Learned positions with OPT's offset of 2 rows.
    { name: 'decoder.embed_positions.weight', shape: (c) => [c.maxPositionEmbeddings + 2, c.hiddenSize], role: 'pos' },
    { name: 'decoder.project_in.weight', shape: (c) => [c.hiddenSize, c.wordEmbedProjDim], role: 'projIn', quantizable: true, when: (c) => c.wordEmbedProjDim !== c.hiddenSize },
    { name: 'decoder.project_out.weight', shape: (c) => [c.wordEmbedProjDim, c.hiddenSize], role: 'projOut', quantizable: true, when: (c) => c.wordEmbedProjDim !== c.hiddenSize },
    ...layerNorm('decoder.final_layer_norm', 'finalLn').map((s) => ({ ...s, when: (c: OptConfig) => c.doLayerNormBefore && !c.removeFinalLayerNorm && c.layerNormElementwiseAffine })),
  ],
  layer: [
    ...attn('k_proj', 1),
    ...attn('v_proj', 2),
    ...attn('q_proj', 0),
    ...linear('decoder.layers.{i}.self_attn.out_proj', 'out', square, { target: 'out_proj', module: 'out_proj' }),
    ...layerNorm('decoder.layers.{i}.self_attn_layer_norm', 'ln1'),
    ...linear('decoder.layers.{i}.fc1', 'fc1', (c) => [c.ffnDim, c.hiddenSize], { target: 'fc1', module: 'fc1' }),
    ...linear('decoder.layers.{i}.fc2', 'fc2', (c) => [c.hiddenSize, c.ffnDim], { target: 'fc2', module: 'fc2' }),
    ...layerNorm('decoder.layers.{i}.final_layer_norm', 'ln2'),
  ],
  numLayers: (c) => c.numHiddenLayers,
};
