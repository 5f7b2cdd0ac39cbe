// One way to get a model folder's tokenizer: tokenizer.json when the folder has one (every
// Llama-shaped model, through @huggingface/tokenizers), else OPT's slow files vocab.json +
// merges.txt (OptTokenizer, whose ids DESIGN.md pins). transformers' AutoTokenizer makes the same
// choice: the fast tokenizer (tokenizer.json) first.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { resolveModelDir, TOKENIZER_FILES, type ResolveOptions } from '../hub/resolve.js';
import { JinjaChatTemplate } from './chat-template.js';
import { HfTokenizer, readTokenizerJson } from './hf-tokenizer.js';
import { OptTokenizer, type DecodeOptions, type EncodeOptions } from './opt-tokenizer.js';

/** What training, generation, evaluation and serving need from any tokenizer. */
export interface PreTrainedTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  /** tokenizer_config.json's chat_template, when it has one. */
  readonly chatTemplate?: JinjaChatTemplate;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  tokenToId(token: string): number | undefined;
  idToTokenString(id: number): string | undefined;
  isSpecialId(id: number): boolean;
}

export const AutoTokenizer = {
  /** A local folder's tokenizer: tokenizer.json if present, else vocab.json + merges.txt. */
  async fromFiles(dir: string): Promise<PreTrainedTokenizer> {
    if (existsSync(join(dir, 'tokenizer.json'))) return HfTokenizer.fromFiles(dir);
    const tok = await OptTokenizer.fromFiles(dir);
    const configPath = join(dir, 'tokenizer_config.json');
    tok.chatTemplate = JinjaChatTemplate.fromConfig((await readTokenizerJson(configPath, false)) ?? {}, configPath);
    return tok;
  },

  /** A local folder, or a hub id resolved through the HF cache (only the tokenizer files are fetched). */
  async fromPretrained(idOrDir: string, options: ResolveOptions = {}): Promise<PreTrainedTokenizer> {
    return AutoTokenizer.fromFiles(await resolveModelDir(idOrDir, { files: TOKENIZER_FILES, ...options }));
  },
};
