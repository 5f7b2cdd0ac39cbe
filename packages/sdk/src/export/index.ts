export { exportModel, type ExportOptions, type ExportResult, type ExportFormat } from './export-model.js';
export { writeGguf, ggufHead, ggufChunks, kv, type GgufImage, type GgufTensorSpec } from './gguf-writer.js';
export { readGguf, ggufTensorF32, ggufValue, type GgufFile, type GgufReadTensor, type GgufReadValue } from './gguf-reader.js';
export { GGML_TYPE_NAMES, isGgmlTypeName, type GgmlTypeName, type GgufValue } from './gguf-format.js';
export { quantizeQ8_0, quantizeQ4_0, encodeTensor } from './gguf-quant.js';
export { ggufTensorName, permuteRows } from './gguf-names.js';
export { ggufAdapterAlpha } from './gguf-adapter.js';
export { modelfile, ollamaTemplate } from './modelfile.js';
export { readPeftAdapter, type PeftAdapter } from './peft-adapter.js';
