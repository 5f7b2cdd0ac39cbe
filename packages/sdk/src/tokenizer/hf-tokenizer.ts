// A tokenizer.json tokenizer (Llama 3, Qwen2/3, SmolLM2, …) through @huggingface/tokenizers,
// Hugging Face's own TypeScript port of the `tokenizers` crate: normalizer, pre-tokenizer, model,
// post-processor and decoder all come from the file, so ids match transformers' fast tokenizer.
// tokenizer_config.json adds the roles of special tokens and the chat template.
import { join } from 'node:path';

import { Tokenizer } from '@huggingface/tokenizers';

import { isLoraError, LoraError } from '../io/errors.js';
import { jsonSyntaxError, readSmallFile } from '../io/safe-file.js';
import { JinjaChatTemplate, tokenContent } from './chat-template.js';
import type { DecodeOptions, EncodeOptions } from './opt-tokenizer.js';

type Json = Record<string, unknown>;

/** Llama 3's tokenizer.json is 8.7 MB and Qwen3's 11 MB; 64 MiB leaves room for any real one. */
const MAX_TOKENIZER_BYTES = 64 * 1024 * 1024;

/** Reads a JSON object file; a missing optional file is undefined, anything unreadable is E_TOKENIZER naming it. */
export async function readTokenizerJson(path: string, required: boolean): Promise<Json | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readSmallFile(path, MAX_TOKENIZER_BYTES);
  } catch (err) {
    if (!isLoraError(err, 'E_FILE_NOT_FOUND')) throw err;
    if (required) throw new LoraError('E_TOKENIZER', `tokenizer file missing: ${path}`);
    return undefined;
  }
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (err) {
    // V8's JSON messages quote the text; say only where it broke.
    throw new LoraError('E_TOKENIZER', `${path}: ${err instanceof SyntaxError ? `not valid JSON (${jsonSyntaxError(err)})` : (err as Error).message}`);
  }
}

export class HfTokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number;
  /** The config's pad token, else eos (Llama 3 has none; padded positions are masked either way). */
  readonly padTokenId: number;
  readonly unkTokenId: number | undefined;
  private readonly specialIds: Set<number>;
  /** bos/eos that tokenizer_config.json's add_bos_token/add_eos_token add or take away from what the post-processor does. */
  private readonly addBos: boolean | undefined;
  private readonly addEos: boolean | undefined;

  /** `where` names the folder in errors. Construction parses the whole vocabulary synchronously (Llama 3: ~2-9 s). */
  constructor(private readonly tokenizer: Tokenizer, readonly config: Json, readonly chatTemplate: JinjaChatTemplate | undefined, where: string) {
    const vocab = tokenizer.get_vocab(true);
    let max = -1;
    for (const id of vocab.values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    this.specialIds = new Set([...tokenizer.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    const idOf = (key: string): number | undefined => {
      const token = tokenContent(config[key]);
      if (token === undefined) return undefined;
      const id = tokenizer.token_to_id(token);
      if (id === undefined) throw new LoraError('E_TOKENIZER', `${where}: ${key} ${JSON.stringify(token)} is not in the vocabulary`, { field: key });
      return id;
    };
    this.bosTokenId = idOf('bos_token');
    const eos = idOf('eos_token');
    if (eos === undefined) throw new LoraError('E_TOKENIZER', `${where}: no eos_token in tokenizer_config.json or special_tokens_map.json`, { field: 'eos_token' });
    this.eosTokenId = eos;
    this.padTokenId = idOf('pad_token') ?? eos;
    this.unkTokenId = idOf('unk_token');
    // transformers' Llama-style fast tokenizers rebuild the post-processor from add_bos_token /
    // add_eos_token; here the post-processor's own choice (what it adds to an empty text) is
    // corrected at encode time instead. Unset flags leave tokenizer.json's choice alone.
    const added = tokenizer.encode('', { add_special_tokens: true }).ids;
    const wants = (flag: unknown, id: number | undefined, has: boolean) => (typeof flag === 'boolean' && id !== undefined && flag !== has ? flag : undefined);
    this.addBos = wants(config.add_bos_token, this.bosTokenId, added[0] === this.bosTokenId);
    this.addEos = wants(config.add_eos_token, this.eosTokenId, added.length > 0 && added[added.length - 1] === this.eosTokenId);
  }

  /** tokenizer.json (required) + tokenizer_config.json and special_tokens_map.json (optional) of a folder. */
  static async fromFiles(dir: string): Promise<HfTokenizer> {
    const jsonPath = join(dir, 'tokenizer.json');
    const json = (await readTokenizerJson(jsonPath, true))!;
    const configPath = join(dir, 'tokenizer_config.json');
    const config = (await readTokenizerJson(configPath, false)) ?? {};
    const map = (await readTokenizerJson(join(dir, 'special_tokens_map.json'), false)) ?? {};
    // special_tokens_map.json fills roles the config leaves out, as transformers merges them.
    const roles: Json = { ...config };
    for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) if (tokenContent(roles[key]) === undefined && tokenContent(map[key]) !== undefined) roles[key] = map[key];
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, roles);
    } catch (e) {
      throw new LoraError('E_TOKENIZER', `${jsonPath}: @huggingface/tokenizers cannot read it: ${(e as Error).message}`, { cause: e });
    }
    return new HfTokenizer(tokenizer, roles, JinjaChatTemplate.fromConfig(roles, configPath), dir);
  }

  /** Ids as transformers' fast tokenizer gives them: bos/eos from tokenizer.json's post-processor, as add_bos_token/add_eos_token correct it. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const special = options.addSpecialTokens ?? true;
    const ids = this.tokenizer.encode(text, { add_special_tokens: special }).ids;
    if (!special) return ids;
    if (this.addBos === true) ids.unshift(this.bosTokenId!);
    else if (this.addBos === false && ids[0] === this.bosTokenId) ids.shift();
    if (this.addEos === true) ids.push(this.eosTokenId);
    else if (this.addEos === false && ids[ids.length - 1] === this.eosTokenId) ids.pop();
    return ids;
  }

  /**
   * No clean_up_tokenization_spaces (Llama 3's config asks for it: "it 's" → "it's"), so decoding is
   * the exact inverse of encoding and streamed pieces concatenate; ids past the vocabulary (an
   * embedding padded beyond it, Qwen3's 151936 rows for 151669 tokens) decode to nothing.
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const known: number[] = [];
    for (let i = 0; i < ids.length; i++) if (this.tokenizer.id_to_token(ids[i]) !== undefined) known.push(ids[i]);
    return this.tokenizer.decode(known, { skip_special_tokens: options.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToTokenString(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }
}
