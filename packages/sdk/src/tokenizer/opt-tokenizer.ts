import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LoraError } from '../io/errors.js';
import { resolveModelDir, TOKENIZER_FILES, type ResolveOptions } from '../hub/resolve.js';
import { BytePairMerger } from './bpe.js';
import { byteCharsToBytes, textToByteChars } from './byte-unicode.js';
import { loadTokenizerSpec } from './load.js';
import { pretokenize } from './pretokenize.js';
import type { JinjaChatTemplate } from './chat-template.js';
import type { TokenizerSpec } from './spec.js';

export interface EncodeOptions {
  /** Add bos/eos as the tokenizer config says (default true), like transformers' `add_special_tokens`. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave special tokens (`</s>`, `<pad>`, …) out of the text (default false). */
  skipSpecialTokens?: boolean;
}

/**
 * OPT's tokenizer: GPT-2 byte-level BPE over a vocabulary whose first ids are fairseq's
 * `<s> <pad> </s> <unk>`. Text → UTF-8 bytes → byte characters → GPT-2 pieces → merges → ids, so any
 * string round-trips, emoji and CJK included (a character may span several tokens). Decoding does
 * not apply transformers' `clean_up_tokenization_spaces`, so decode(encode(s)) === s exactly.
 */
export class OptTokenizer {
  private readonly idToToken: string[];
  private readonly merger: BytePairMerger;
  private readonly specialIds: Set<number>;
  private readonly specialPattern: RegExp | undefined;
  /** tokenizer_config.json's chat_template, set by AutoTokenizer when the folder has one (OPT's has none). */
  chatTemplate?: JinjaChatTemplate;

  constructor(readonly spec: TokenizerSpec) {
    this.idToToken = [];
    for (const [token, id] of spec.vocab) this.idToToken[id] = token;
    this.merger = new BytePairMerger(new Map(spec.merges.map(([a, b], rank) => [`${a} ${b}`, rank])));
    for (const t of [spec.bosToken, spec.eosToken, spec.padToken, spec.unkToken, ...spec.specialTokens]) {
      if (!spec.vocab.has(t)) throw new LoraError('E_TOKENIZER', `special token ${JSON.stringify(t)} is not in the vocabulary`);
    }
    this.specialIds = new Set(spec.specialTokens.map((t) => spec.vocab.get(t)!));
    const escaped = [...spec.specialTokens].sort((a, b) => b.length - a.length).map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    this.specialPattern = escaped.length ? new RegExp(`(${escaped.join('|')})`) : undefined;
  }

  static async fromFiles(dir: string): Promise<OptTokenizer> {
    return new OptTokenizer(await loadTokenizerSpec(dir));
  }

  /** A local folder, or a hub id resolved through the HF cache (only the tokenizer files are fetched). */
  static async fromPretrained(idOrDir: string, options: ResolveOptions = {}): Promise<OptTokenizer> {
    const dir = await resolveModelDir(idOrDir, { files: TOKENIZER_FILES, ...options });
    return OptTokenizer.fromFiles(dir);
  }

  get vocabSize(): number {
    return this.idToToken.length;
  }
  get bosTokenId(): number {
    return this.spec.vocab.get(this.spec.bosToken)!;
  }
  get eosTokenId(): number {
    return this.spec.vocab.get(this.spec.eosToken)!;
  }
  get padTokenId(): number {
    return this.spec.vocab.get(this.spec.padToken)!;
  }
  get unkTokenId(): number {
    return this.spec.vocab.get(this.spec.unkToken)!;
  }

  tokenToId(token: string): number | undefined {
    return this.spec.vocab.get(token);
  }

  idToTokenString(id: number): string | undefined {
    return this.idToToken[id];
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Tokens (in byte-character form) without special-token handling of bos/eos. */
  tokenize(text: string): string[] {
    const out: string[] = [];
    const parts = this.specialPattern ? text.split(this.specialPattern) : [text];
    parts.forEach((part, i) => {
      // split() with a capture group puts the matched special tokens at odd indices.
      if (i % 2 === 1) out.push(part);
      // A loop, not push(...tokens): one 1M-character word spread as arguments overflowed the stack.
      else for (const piece of pretokenize(part)) for (const token of this.merger.merge(textToByteChars(piece))) out.push(token);
    });
    return out;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = this.tokenize(text).map((t) => this.spec.vocab.get(t) ?? this.unkTokenId);
    if (options.addSpecialTokens ?? true) {
      if (this.spec.addBosToken) ids.unshift(this.bosTokenId);
      if (this.spec.addEosToken) ids.push(this.eosTokenId);
    }
    return ids;
  }

  /** Ids the vocabulary does not have (a model's embedding may be padded past it) decode to nothing. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const decoder = new TextDecoder('utf-8'); // replacement on bad bytes, like errors="replace"
    let text = '';
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length) text += decoder.decode(new Uint8Array(bytes));
      bytes = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const token = this.idToToken[id];
      if (token === undefined) continue;
      if (this.specialIds.has(id)) {
        if (options.skipSpecialTokens) continue;
        flush();
        text += token;
      } else {
        byteCharsToBytes(token, bytes);
      }
    }
    flush();
    return text;
  }

  /** Writes vocab.json, merges.txt and the two config files, readable by this class and by transformers. */
  async save(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const s = this.spec;
    const vocab = Object.fromEntries([...s.vocab].sort((a, b) => a[1] - b[1]));
    const merges = ['#version: 0.2', ...s.merges.map(([a, b]) => `${a} ${b}`)].join('\n') + '\n';
    const roles = { bos_token: s.bosToken, eos_token: s.eosToken, unk_token: s.unkToken, pad_token: s.padToken };
    const config = {
      tokenizer_class: 'GPT2Tokenizer',
      add_bos_token: s.addBosToken,
      add_eos_token: s.addEosToken,
      add_prefix_space: false,
      errors: 'replace',
      ...roles,
      additional_special_tokens: s.specialTokens.filter((t) => !Object.values(roles).includes(t)),
    };
    await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
    await writeFile(join(dir, 'merges.txt'), merges);
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
    await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify(roles, null, 2) + '\n');
  }
}
