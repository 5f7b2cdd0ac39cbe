export { OptTokenizer, type EncodeOptions, type DecodeOptions } from './opt-tokenizer.js';
export { loadTokenizerSpec, parseMerges } from './load.js';
export { buildByteLevelTokenizer, type BuildTokenizerOptions } from './train.js';
export { OPT_SPECIAL_TOKENS, OPT_TOKEN_ROLES, type TokenizerSpec } from './spec.js';
export { BYTE_TO_CHAR, CHAR_TO_BYTE, textToByteChars, byteCharsToBytes } from './byte-unicode.js';
export { GPT2_PATTERN, pretokenize } from './pretokenize.js';
export { BytePairMerger } from './bpe.js';
