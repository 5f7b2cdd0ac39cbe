export * from './io/index.js';
export * from './tokenizer/index.js';
export * from './hub/index.js';
