/**
 * ROUGE as Google's `rouge-score` package computes it (`rouge_scorer.RougeScorer`).
 *
 * Tokenizer (rouge-score's `tokenize.tokenize`): lowercase; every run of characters other than
 * [a-z0-9] becomes a space; split on whitespace; with `useStemmer`, Porter-stem (NLTK's default mode)
 * the tokens longer than 3 characters; keep only tokens matching ^[a-z0-9]+$. Non-ASCII letters
 * therefore vanish, exactly as in rouge-score.
 *
 * rougeN: clipped n-gram overlap; rougeL: LCS over the whole texts; rougeLsum: summary-level union
 * LCS with sentences split on "\n" (empty lines dropped). Multiple references: per ROUGE type, the
 * reference with the highest F-measure wins (first one on ties), as `score_multi`.
 */
import { EvalError } from './errors.js';
import { defaultStemmer } from './porter.js';

export interface RougeTriple {
  precision: number;
  recall: number;
  fmeasure: number;
}

export type RougeType = `rouge${number}` | 'rougeL' | 'rougeLsum';

export interface RougeOptions {
  /** Default ['rouge1', 'rouge2', 'rougeL', 'rougeLsum']. */
  rougeTypes?: readonly RougeType[];
  /** Porter-stem tokens longer than 3 characters. Default false (rouge-score's default). */
  useStemmer?: boolean;
}

export const DEFAULT_ROUGE_TYPES: readonly RougeType[] = ['rouge1', 'rouge2', 'rougeL', 'rougeLsum'];

/** rouge-score's tokenizer. */
export function rougeTokenize(text: string, useStemmer = false): string[] {
  const cleaned = text.toLowerCase().replace(/[^a-z0-9]+/g, ' ');
  // After the replacement the only whitespace left is ' '; re.split(r"\s+") yields '' at the ends.
  let tokens = cleaned.split(/\s+/);
  if (useStemmer) {
    const stemmer = defaultStemmer();
    tokens = tokens.map((t) => (t.length > 3 ? stemmer.stem(t) : t));
  }
  return tokens.filter((t) => /^[a-z0-9]+$/.test(t));
}

function fmeasure(precision: number, recall: number): number {
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

function ngrams(tokens: readonly string[], n: number): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(' ');
    out.set(key, (out.get(key) ?? 0) + 1);
  }
  return out;
}

function scoreNgrams(target: Map<string, number>, prediction: Map<string, number>): RougeTriple {
  let overlap = 0;
  for (const [g, c] of target) overlap += Math.min(c, prediction.get(g) ?? 0);
  let targetCount = 0;
  for (const c of target.values()) targetCount += c;
  let predictionCount = 0;
  for (const c of prediction.values()) predictionCount += c;
  const precision = overlap / Math.max(predictionCount, 1);
  const recall = overlap / Math.max(targetCount, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Both token lists as small integers, so the LCS loops compare numbers, not strings. */
function asIds(a: readonly string[], b: readonly string[]): [Int32Array, Int32Array] {
  const ids = new Map<string, number>();
  const map = (tokens: readonly string[]) => Int32Array.from(tokens, (t) => {
    let id = ids.get(t);
    if (id === undefined) ids.set(t, (id = ids.size));
    return id;
  });
  return [map(a), map(b)];
}

/**
 * Advances LCS table rows: `prev` holds row i-1 of (ref x can), `cur` receives row i. Only rows are
 * ever held, never the (rows+1) x (cols+1) table, which for two 30k-word texts was 3.6 GB.
 */
function nextRow(refToken: number, can: Int32Array, prev: Int32Array, cur: Int32Array): void {
  cur[0] = 0;
  for (let j = 1; j <= can.length; j++) {
    cur[j] = refToken === can[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
  }
}

function scoreLcs(target: readonly string[], prediction: readonly string[]): RougeTriple {
  if (target.length === 0 || prediction.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const [ref, can] = asIds(target, prediction);
  let prev = new Int32Array(can.length + 1);
  let cur = new Int32Array(can.length + 1);
  for (let i = 1; i <= ref.length; i++) {
    nextRow(ref[i - 1], can, prev, cur);
    [prev, cur] = [cur, prev];
  }
  const lcs = prev[can.length];
  const precision = lcs / prediction.length;
  const recall = lcs / target.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/**
 * Indices into `ref` of one LCS, read back exactly as rouge-score's `_backtrack_norec` reads its full
 * table (from the bottom-right; a match moves diagonally, else left when t[i][j-1] > t[i-1][j], else
 * up). The table is never held: every k-th row (k ~ sqrt(rows)) is kept from one forward pass, and
 * the k rows of the block being walked are recomputed from the checkpoint above it. Memory is
 * ~2·sqrt(rows)·cols integers (42 MB for 30k x 30k words instead of 3.6 GB) for twice the work.
 */
export function lcsIndices(refTokens: readonly string[], canTokens: readonly string[]): number[] {
  const [ref, can] = asIds(refTokens, canTokens);
  const m = ref.length;
  const cols = can.length + 1;
  const k = Math.max(1, Math.ceil(Math.sqrt(m)));
  const checkpoints: Int32Array[] = [new Int32Array(cols)];
  let prev = new Int32Array(cols);
  let cur = new Int32Array(cols);
  for (let i = 1; i <= m; i++) {
    nextRow(ref[i - 1], can, prev, cur);
    [prev, cur] = [cur, prev];
    if (i % k === 0) checkpoints.push(prev.slice());
  }
  const block = Array.from({ length: k + 1 }, () => new Int32Array(cols));
  const out: number[] = [];
  let i = m;
  let j = can.length;
  while (i > 0 && j > 0) {
    // Rows base..i of the block holding row i, rebuilt from checkpoint row `base`.
    const base = Math.floor((i - 1) / k) * k;
    block[0].set(checkpoints[base / k]);
    for (let r = base + 1; r <= i; r++) nextRow(ref[r - 1], can, block[r - 1 - base], block[r - base]);
    while (i > base && j > 0) {
      if (ref[i - 1] === can[j - 1]) {
        out.push(i - 1);
        i--;
        j--;
      } else if (block[i - base][j - 1] > block[i - 1 - base][j]) {
        j--;
      } else {
        i--;
      }
    }
  }
  return out.reverse();
}

function summaryLevelLcs(refSents: readonly string[][], canSents: readonly string[][]): RougeTriple {
  if (refSents.length === 0 || canSents.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const m = refSents.reduce((a, s) => a + s.length, 0);
  const n = canSents.reduce((a, s) => a + s.length, 0);
  if (n === 0 || m === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const countsR = new Map<string, number>();
  const countsC = new Map<string, number>();
  for (const s of refSents) for (const t of s) countsR.set(t, (countsR.get(t) ?? 0) + 1);
  for (const s of canSents) for (const t of s) countsC.set(t, (countsC.get(t) ?? 0) + 1);
  let hits = 0;
  for (const r of refSents) {
    const union = new Set<number>();
    for (const c of canSents) for (const i of lcsIndices(r, c)) union.add(i);
    const indices = [...union].sort((a, b) => a - b);
    for (const i of indices) {
      const t = r[i];
      // Each token is credited at most as often as it occurs on both sides (ROUGE 1.5.5).
      if ((countsC.get(t) ?? 0) > 0 && (countsR.get(t) ?? 0) > 0) {
        hits++;
        countsC.set(t, (countsC.get(t) ?? 0) - 1);
        countsR.set(t, (countsR.get(t) ?? 0) - 1);
      }
    }
  }
  const recall = hits / m;
  const precision = hits / n;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

function sentences(text: string): string[] {
  return text.split('\n').filter((s) => s.length > 0);
}

function checkTypes(types: readonly string[]): void {
  for (const t of types) {
    if (t === 'rougeL' || t === 'rougeLsum') continue;
    const m = /^rouge([0-9])$/.exec(t);
    if (!m) throw new EvalError('E_EVAL_ARGS', `ROUGE: invalid rouge type '${t}' (expected rouge1..rouge9, rougeL or rougeLsum)`);
    if (Number(m[1]) <= 0) throw new EvalError('E_EVAL_ARGS', `ROUGE: rougen requires positive n: ${t}`);
  }
}

/** `RougeScorer(types, use_stemmer).score(target, prediction)`. */
export function rougeScore(target: string, prediction: string, options: RougeOptions = {}): Record<string, RougeTriple> {
  const types = options.rougeTypes ?? DEFAULT_ROUGE_TYPES;
  checkTypes(types);
  const stem = options.useStemmer ?? false;
  const targetTokens = rougeTokenize(target, stem);
  const predictionTokens = rougeTokenize(prediction, stem);
  const result: Record<string, RougeTriple> = {};
  for (const type of types) {
    if (type === 'rougeL') {
      result[type] = scoreLcs(targetTokens, predictionTokens);
    } else if (type === 'rougeLsum') {
      result[type] = summaryLevelLcs(
        sentences(target).map((s) => rougeTokenize(s, stem)),
        sentences(prediction).map((s) => rougeTokenize(s, stem)),
      );
    } else {
      const n = Number(type.slice(5));
      result[type] = scoreNgrams(ngrams(targetTokens, n), ngrams(predictionTokens, n));
    }
  }
  return result;
}

/** `RougeScorer.score_multi(targets, prediction)`: per type, the target with the best F-measure. */
export function rougeScoreMulti(
  targets: readonly string[],
  prediction: string,
  options: RougeOptions = {},
): Record<string, RougeTriple> {
  if (targets.length === 0) throw new EvalError('E_EVAL_ARGS', 'ROUGE: score_multi needs at least one target');
  const types = options.rougeTypes ?? DEFAULT_ROUGE_TYPES;
  const all = targets.map((t) => rougeScore(t, prediction, options));
  const out: Record<string, RougeTriple> = {};
  for (const type of types) {
    let best = 0;
    for (let i = 1; i < all.length; i++) if (all[i][type].fmeasure > all[best][type].fmeasure) best = i;
    out[type] = all[best][type];
  }
  return out;
}
