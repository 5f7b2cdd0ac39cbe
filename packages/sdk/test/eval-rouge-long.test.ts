// ROUGE-L / ROUGE-Lsum on long texts: the LCS is computed from table rows (never the full table, which
// for a 30k-word pair took 3.6 GB), and the backtracked LCS is exactly the one rouge-score's full-table
// `_backtrack_norec` reads, checked here against a plain full-table transcription of it.
import { describe, expect, it } from 'vitest';

import { lcsIndices } from '../src/eval/rouge.js';
import { rougeScore } from '../src/eval/index.js';

/** rouge-score's `_lcs_table` + `_backtrack_norec`, transcribed with the whole table. */
function fullTableIndices(ref: string[], can: string[]): number[] {
  const rows = ref.length;
  const cols = can.length;
  const t = Array.from({ length: rows + 1 }, () => new Array<number>(cols + 1).fill(0));
  for (let i = 1; i <= rows; i++) {
    for (let j = 1; j <= cols; j++) t[i][j] = ref[i - 1] === can[j - 1] ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1]);
  }
  const out: number[] = [];
  let i = rows;
  let j = cols;
  while (i !== 0 && j !== 0) {
    if (ref[i - 1] === can[j - 1]) {
      out.unshift(i - 1);
      i--;
      j--;
    } else if (t[i][j - 1] > t[i - 1][j]) j--;
    else i--;
  }
  return out;
}

/** Deterministic words from a small vocabulary, so that ties between paths are common. */
function words(n: number, vocab: number, seed: number): string[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return `w${s % vocab}`;
  });
}

describe('long-text LCS', () => {
  it('backtracks to the same LCS indices as the full table, over many shapes and tie-heavy inputs', () => {
    let cases = 0;
    for (const [m, n] of [[1, 1], [1, 9], [9, 1], [2, 3], [7, 7], [16, 5], [17, 40], [64, 63], [100, 37], [250, 260]]) {
      for (const vocab of [2, 3, 10]) {
        for (let seed = 1; seed <= 4; seed++) {
          const ref = words(m, vocab, seed * 7 + m);
          const can = words(n, vocab, seed * 13 + n);
          expect(lcsIndices(ref, can), `${m}x${n} vocab ${vocab} seed ${seed}`).toEqual(fullTableIndices(ref, can));
          cases++;
        }
      }
    }
    expect(cases).toBe(120);
  });

  it('scores an 8,000-word pair without the quadratic table (256 MB before; 3.6 GB at 30k words)', () => {
    const a = words(8_000, 50, 1).join(' ');
    const b = words(8_000, 50, 2).join(' ');
    const rss = process.memoryUsage().rss;
    const s = rougeScore(a, b, { rougeTypes: ['rougeL', 'rougeLsum'] });
    // ~2·90 rows of 8,001 int32 (6 MB), not the 8,001 x 8,001 table.
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 1024 * 1024);
    // Two random texts over 50 words share an LCS of ~2/sqrt(50) = 0.28 of their length (Chvátal–Sankoff).
    expect(s.rougeL.fmeasure).toBeGreaterThan(0.2);
    expect(s.rougeL.fmeasure).toBeLessThan(0.35);
    // One sentence each: the summary-level union LCS is the LCS itself.
    expect(s.rougeLsum).toEqual(s.rougeL);
  });
});
