export * from './io/index.js';
export * from './tokenizer/index.js';
export * from './hub/index.js';
export * from './data/index.js';
export * from './config/index.js';
export * from './eval/index.js';
