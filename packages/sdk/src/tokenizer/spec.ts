/** Everything a byte-level BPE tokenizer is made of, independent of which files it came from. */
export interface TokenizerSpec {
  /** token → id. Byte-level tokens are written in GPT-2's byte-character alphabet. */
  vocab: Map<string, number>;
  /** Merges in rank order (earliest learned first). */
  merges: [string, string][];
  /** Tokens matched literally in input text and never split (`<s>`, `</s>`, `<pad>`, `<unk>`, added tokens). */
  specialTokens: string[];
  bosToken: string;
  eosToken: string;
  padToken: string;
  unkToken: string;
  /** Prepend bos on encode (tokenizer_config.json's `add_bos_token`; OPT sets it). */
  addBosToken: boolean;
  addEosToken: boolean;
}

/** OPT's special tokens and the ids fairseq gave them; every OPT vocabulary starts this way. */
export const OPT_SPECIAL_TOKENS = [
  ['<s>', 0],
  ['<pad>', 1],
  ['</s>', 2],
  ['<unk>', 3],
] as const;

/** OPT's choices: bos, eos and unk are all `</s>` (id 2); pad is `<pad>` (id 1). */
export const OPT_TOKEN_ROLES = { bosToken: '</s>', eosToken: '</s>', padToken: '<pad>', unkToken: '</s>' } as const;
