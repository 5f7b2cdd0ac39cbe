/**
 * Byte-pair merging by rank: in each round, merge every occurrence of the adjacent pair whose merge
 * was learned earliest, until no adjacent pair has a rank. Results are cached per piece, because text
 * repeats the same words endlessly and merging is the hot loop of encoding.
 */
export class BytePairMerger {
  private readonly cache = new Map<string, string[]>();

  constructor(
    /** `"left right"` → rank (line order in merges.txt). */
    private readonly ranks: ReadonlyMap<string, number>,
    private readonly maxCacheEntries = 50_000,
  ) {}

  merge(piece: string): string[] {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    const result = this.mergeUncached(piece);
    if (this.cache.size >= this.maxCacheEntries) this.cache.clear();
    this.cache.set(piece, result);
    return result;
  }

  private mergeUncached(piece: string): string[] {
    let symbols = Array.from(piece);
    while (symbols.length > 1) {
      let best = Infinity;
      let bestPair = '';
      for (let i = 0; i < symbols.length - 1; i++) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < best) {
          best = rank;
          bestPair = `${symbols[i]} ${symbols[i + 1]}`;
        }
      }
      if (best === Infinity) break;
      const [left, right] = bestPair.split(' ');
      const next: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i < symbols.length - 1 && symbols[i] === left && symbols[i + 1] === right) {
          next.push(left + right);
          i++;
        } else {
          next.push(symbols[i]);
        }
      }
      symbols = next;
    }
    return symbols;
  }
}
