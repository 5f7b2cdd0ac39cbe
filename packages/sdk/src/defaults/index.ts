export { ensureTinyModel, describeTinyModel, TINY_DEFAULTS, type TinyModelOptions } from './tiny-model.js';
