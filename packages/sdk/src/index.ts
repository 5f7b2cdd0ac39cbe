// The public surface of @lora/sdk, one file per section of the API reference (src/public/*.ts, the
// typedoc entry points). Parsers and helpers used inside (zip, pickle, stemmers, metric tokenizers)
// are importable from their own modules in this repository but are not part of the package's API.
export * from './public/models.js';
export * from './public/data.js';
export * from './public/training.js';
export * from './public/evaluation.js';
export * from './public/files.js';
export * from './public/serving.js';
export * from './export/index.js';
