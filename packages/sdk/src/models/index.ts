export { AutoModelForCausalLM, SUPPORTED_MODEL_TYPES, readModelType } from './auto.js';
export type { CausalLM, CausalLMConfig, GenerateOptions, GenerateResult, LoadOptions, LoadProgressEvent, ModelBatch, StepOptions, StepResult } from './causal-lm.js';
export { expandParams, loraLayout, paramShapes, type LoraLayout, type LoraModuleLayout, type Param, type ParamSpec, type ParamTable } from './params.js';
export { OPT_PARAMS } from './opt-params.js';
export { LlamaForCausalLM, type LlamaLayerWeights, type LlamaWeights } from './llama.js';
export { parseLlamaConfig, loadLlamaConfig, llamaConfigToJson, ropeInvFreq, LLAMA_MODEL_TYPES, type LlamaConfig, type LlamaModelType, type RopeScaling } from './llama-config.js';
export { LLAMA_PARAMS } from './llama-params.js';
export { DecoderLM, type BaseWeights, type StepWorkspace } from '../model/decoder-lm.js';
export { RaggedBatch, raggedForward, type RaggedBlock, type RaggedModel, type RaggedRow, type RaggedStepOptions, type RowKvCache } from './batch-step.js';
