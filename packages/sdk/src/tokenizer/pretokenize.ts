/**
 * GPT-2's pre-tokenization: contractions, runs of letters / digits / other symbols each with one
 * optional leading space, and whitespace (a run keeps its last space for the word that follows,
 * which is what `\s+(?!\S)` does). BPE merges never cross these pieces.
 */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export function pretokenize(text: string): string[] {
  return text.match(GPT2_PATTERN) ?? [];
}
