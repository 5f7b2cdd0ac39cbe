export { ensureTinyModel, describeTinyModel, TINY_DEFAULTS, type TinyModelOptions } from './tiny-model.js';
export { TRAINING_DEFAULTS, defaultAlpha } from './training-defaults.js';
export { ensureTinyLlama, describeTinyLlama, TINY_LLAMA_DEFAULTS, type TinyLlamaOptions } from './tiny-llama.js';
