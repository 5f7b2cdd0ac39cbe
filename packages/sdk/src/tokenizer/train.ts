import { BYTE_TO_CHAR, textToByteChars } from './byte-unicode.js';
import { OptTokenizer } from './opt-tokenizer.js';
import { pretokenize } from './pretokenize.js';
import { OPT_SPECIAL_TOKENS, OPT_TOKEN_ROLES, type TokenizerSpec } from './spec.js';

export interface BuildTokenizerOptions {
  /** Text to learn merges from; none means a pure byte-level vocabulary (260 tokens). */
  corpus?: Iterable<string>;
  /** Upper bound on learned merges (default 0: no merges). */
  numMerges?: number;
  /** A pair must occur at least this often to be merged (default 2). */
  minFrequency?: number;
}

/**
 * Builds a small OPT-compatible tokenizer the product can ship without downloading anything:
 * `<s> <pad> </s> <unk>` at OPT's ids 0–3, the 256 byte characters at 4–259 (so every string is
 * encodable), then merges learned from `corpus` by plain BPE training — most frequent adjacent pair
 * first, ties broken by the pair's text so the result is deterministic.
 */
export function buildByteLevelTokenizer(options: BuildTokenizerOptions = {}): OptTokenizer {
  const vocab = new Map<string, number>(OPT_SPECIAL_TOKENS.map(([t, id]) => [t, id]));
  for (const c of BYTE_TO_CHAR) vocab.set(c, vocab.size);
  const merges = learnMerges(options.corpus ?? [], options.numMerges ?? 0, options.minFrequency ?? 2);
  for (const [a, b] of merges) if (!vocab.has(a + b)) vocab.set(a + b, vocab.size);
  const spec: TokenizerSpec = {
    vocab,
    merges,
    specialTokens: OPT_SPECIAL_TOKENS.map(([t]) => t),
    ...OPT_TOKEN_ROLES,
    addBosToken: true,
    addEosToken: false,
  };
  return new OptTokenizer(spec);
}

function learnMerges(corpus: Iterable<string>, numMerges: number, minFrequency: number): [string, string][] {
  if (numMerges <= 0) return [];
  const wordCounts = new Map<string, number>();
  for (const text of corpus) {
    for (const piece of pretokenize(text)) {
      const w = textToByteChars(piece);
      wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
    }
  }
  const words = [...wordCounts].map(([w, count]) => ({ symbols: Array.from(w), count }));
  const merges: [string, string][] = [];
  while (merges.length < numMerges) {
    const pairCounts = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i < symbols.length - 1; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
      }
    }
    let best = '';
    let bestCount = 0;
    for (const [key, count] of pairCounts) {
      if (count > bestCount || (count === bestCount && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (bestCount < minFrequency) break;
    const [a, b] = best.split(' ');
    merges.push([a, b]);
    for (const word of words) {
      const next: string[] = [];
      const s = word.symbols;
      for (let i = 0; i < s.length; i++) {
        if (i < s.length - 1 && s[i] === a && s[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(s[i]);
      }
      word.symbols = next;
    }
  }
  return merges;
}
