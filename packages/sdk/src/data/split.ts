// Seeded shuffling and train/test splits, identical on every machine for the same seed.

/** A small, fast 32-bit PRNG (mulberry32); returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates shuffle of a copy. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = items.slice();
  const rand = seededRandom(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * Shuffles by seed, then puts the first `trainFraction` of the items in `train` and the rest in
 * `test` (like `datasets`' train_test_split(test_size = 1 - trainFraction, seed)).
 */
export function splitTrainTest<T>(items: readonly T[], trainFraction: number, seed: number): { train: T[]; test: T[] } {
  if (!(trainFraction > 0 && trainFraction <= 1)) throw new RangeError(`split fraction must be in (0, 1], got ${trainFraction}`);
  const s = shuffled(items, seed);
  const n = Math.max(1, Math.round(s.length * trainFraction));
  return { train: s.slice(0, n), test: s.slice(n) };
}
