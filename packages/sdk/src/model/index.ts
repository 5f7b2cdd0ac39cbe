export { OptForCausalLM, type LoadOptions, type LoadProgressEvent, type ModelBatch, type StepOptions, type StepResult } from './opt.js';
export { LoraAdapter, LORA_TARGETS, type LoraOptions, type LoraTarget, type LoraModule } from './lora.js';
export { resolveDevice, type DeviceOption, type Backend, type BaseDType, type ResolvedDevice } from './device.js';
export { peftKey, peftConfig, adapterTensors, readAdapterConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS } from './adapter-io.js';
export type { Kernels } from './kernels.js';
export { bindKernels } from './bind-kernels.js';
export { mergedTensors, exportMerged } from './merge.js';
export { generate, sampleToken, type GenerateOptions, type GenerateResult } from './generate.js';
