export { OptForCausalLM } from './opt.js';
export * from '../models/index.js';
export { LoraAdapter, LORA_TARGETS, ALL_LINEAR, type LoraOptions, type LoraTarget, type LoraModule } from './lora.js';
export { resolveDevice, type DeviceOption, type Backend, type BaseDType, type ResolvedDevice } from './device.js';
export { peftKey, peftConfig, adapterTensors, readAdapterConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS } from './adapter-io.js';
export type { Kernels } from './kernels.js';
export { bindKernels } from './bind-kernels.js';
export { mergedTensors, exportMerged } from './merge.js';
export { generate, sampleToken } from './generate.js';
