/**
 * BLEU as sacreBLEU 2.x computes it (`sacrebleu.metrics.BLEU`, `corpus_bleu`, `sentence_bleu`).
 *
 * - tokenisation: '13a' (mteval-v13a, sacreBLEU's default), 'intl' (mteval-v14 international),
 *   'char' and 'none';
 * - clipped n-gram counts (orders 1..maxNgramOrder, default 4) against the per-n-gram maximum over
 *   the references; empty or missing references of a segment are dropped (variable reference counts);
 * - brevity penalty from the summed closest reference lengths (ties go to the shorter reference);
 * - smoothing 'exp' (NIST, sacreBLEU's default), 'floor' (default 0.1), 'add-k' (default 1), 'none';
 * - `effectiveOrder` stops at the first order the hypothesis has no n-grams of (sentence BLEU).
 *
 * Scores are on sacreBLEU's 0..100 scale. The returned object carries the same fields as
 * sacreBLEU's `BLEUScore` (camel-cased): score, counts, totals, precisions, bp, sysLen, refLen, ratio.
 */
import { EvalError } from './errors.js';
import { pyLower, pyRstrip, pySplit } from './pytext.js';

export type BleuTokenizer = '13a' | 'intl' | 'char' | 'none';
export type BleuSmoothMethod = 'exp' | 'floor' | 'add-k' | 'none';

export interface BleuOptions {
  /** Default '13a'. */
  tokenize?: BleuTokenizer;
  /** Default 'exp' (sacreBLEU's default for both corpus and sentence BLEU). */
  smoothMethod?: BleuSmoothMethod;
  /** For 'floor' (default 0.1) and 'add-k' (default 1); ignored otherwise. */
  smoothValue?: number;
  /** Lowercase before tokenising. Default false. */
  lowercase?: boolean;
  /** Highest n-gram order. Default 4. */
  maxNgramOrder?: number;
  /** Default false for corpus BLEU, true for sentence BLEU (sacreBLEU's defaults). */
  effectiveOrder?: boolean;
}

export interface BleuScore {
  /** BLEU on the 0..100 scale. */
  score: number;
  /** Matched (clipped) n-grams per order; for 'add-k', with k added from order 2 on, as sacreBLEU reports. */
  counts: number[];
  /** Hypothesis n-grams per order (same 'add-k' note). */
  totals: number[];
  /** Per-order precisions on the 0..100 scale (smoothed where the method says so). */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  /** Total hypothesis length in tokens. */
  sysLen: number;
  /** Total (closest) reference length in tokens. */
  refLen: number;
  /** sysLen / refLen (0 when refLen is 0). */
  ratio: number;
}

const SMOOTH_DEFAULTS: Record<BleuSmoothMethod, number | null> = { none: null, floor: 0.1, 'add-k': 1, exp: null };

// ---- tokenizers -------------------------------------------------------------------------------

// Regular expressions of sacreBLEU's TokenizerRegexp (the language-dependent part of mteval-v13a).
const RE_13A: Array<[RegExp, string]> = [
  // punctuation and symbols: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
  [/([{-~[-` -&(-+:-@/])/gu, ' $1 '],
  // period and comma unless preceded by a digit
  [/([^0-9])([.,])/gu, '$1 $2 '],
  // period and comma unless followed by a digit
  [/([.,])([^0-9])/gu, ' $1 $2'],
  // dash when preceded by a digit
  [/([0-9])(-)/gu, '$1 $2 '],
];

/** mteval-v13a tokenisation as sacreBLEU's `Tokenizer13a` does it; returns the tokens joined by spaces. */
export function tokenize13a(line: string): string {
  let s = line
    .replaceAll('<skipped>', '')
    .replaceAll('-\n', '')
    .replaceAll('\n', ' ')
    .replaceAll('&quot;', '"')
    .replaceAll('&amp;', '&')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>');
  s = ` ${s} `;
  for (const [re, repl] of RE_13A) s = s.replace(re, repl);
  return pySplit(s).join(' ');
}

const RE_INTL: Array<[RegExp, string]> = [
  [/(\P{N})(\p{P})/gu, '$1 $2 '],
  [/(\p{P})(\P{N})/gu, ' $1 $2'],
  [/(\p{S})/gu, ' $1 '],
];

/** mteval-v14 "international" tokenisation (sacreBLEU's 'intl'); Unicode classes per this Node's ICU. */
export function tokenizeIntl(line: string): string {
  let s = line;
  for (const [re, repl] of RE_INTL) s = s.replace(re, repl);
  return pySplit(s).join(' ');
}

/** sacreBLEU's 'char' tokenizer: every code point becomes a token. */
export function tokenizeChar(line: string): string {
  return Array.from(line).join(' ');
}

function tokenizerFor(name: BleuTokenizer): (line: string) => string {
  switch (name) {
    case '13a':
      return tokenize13a;
    case 'intl':
      return tokenizeIntl;
    case 'char':
      return tokenizeChar;
    case 'none':
      return (line) => line;
    default:
      throw new EvalError('E_EVAL_ARGS', `BLEU: unknown tokenizer '${String(name)}' (expected 13a, intl, char or none)`);
  }
}

// ---- statistics -------------------------------------------------------------------------------

type NgramCounts = Map<string, number>;

/** n-grams of orders minOrder..maxOrder keyed by their tokens joined with a space (tokens hold no spaces). */
function extractNgrams(line: string, maxOrder: number): { ngrams: NgramCounts; length: number } {
  const tokens = pySplit(line);
  const ngrams: NgramCounts = new Map();
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = tokens.slice(i, i + n).join(' ');
      ngrams.set(key, (ngrams.get(key) ?? 0) + 1);
    }
  }
  return { ngrams, length: tokens.length };
}

function closestRefLen(hypLen: number, refLens: number[]): number {
  let closestDiff = -1;
  let closestLen = -1;
  for (const refLen of refLens) {
    const diff = Math.abs(hypLen - refLen);
    if (closestDiff === -1 || diff < closestDiff) {
      closestDiff = diff;
      closestLen = refLen;
    } else if (diff === closestDiff && refLen < closestLen) {
      closestLen = refLen;
    }
  }
  return closestLen;
}

/** Sufficient statistics of one segment: [hypLen, refLen, correct_1..N, total_1..N]. */
export type BleuStats = number[];

interface Resolved {
  tokenize: BleuTokenizer;
  smoothMethod: BleuSmoothMethod;
  smoothValue: number | undefined;
  lowercase: boolean;
  maxNgramOrder: number;
  effectiveOrder: boolean;
}

function resolve(options: BleuOptions | undefined, effectiveDefault: boolean): Resolved {
  const o = options ?? {};
  const smoothMethod = o.smoothMethod ?? 'exp';
  if (!Object.hasOwn(SMOOTH_DEFAULTS, smoothMethod)) {
    throw new EvalError('E_EVAL_ARGS', `BLEU: unknown smoothing method '${String(smoothMethod)}' (expected exp, floor, add-k or none)`);
  }
  const maxNgramOrder = o.maxNgramOrder ?? 4;
  if (!Number.isInteger(maxNgramOrder) || maxNgramOrder < 1) {
    throw new EvalError('E_EVAL_ARGS', `BLEU: maxNgramOrder must be a positive integer, got ${maxNgramOrder}`);
  }
  return {
    tokenize: o.tokenize ?? '13a',
    smoothMethod,
    smoothValue: o.smoothValue,
    lowercase: o.lowercase ?? false,
    maxNgramOrder,
    effectiveOrder: o.effectiveOrder ?? effectiveDefault,
  };
}

function preprocess(r: Resolved, tok: (s: string) => string, sent: string): string {
  return tok(pyRstrip(r.lowercase ? pyLower(sent) : sent));
}

function segmentStats(r: Resolved, tok: (s: string) => string, hypothesis: string, refs: readonly string[]): BleuStats {
  const N = r.maxNgramOrder;
  const refNgrams: NgramCounts = new Map();
  const refLens: number[] = [];
  for (const ref of refs) {
    const { ngrams, length } = extractNgrams(preprocess(r, tok, ref), N);
    refLens.push(length);
    for (const [g, c] of ngrams) if (c > (refNgrams.get(g) ?? 0)) refNgrams.set(g, c);
  }
  const { ngrams: hypNgrams, length: hypLen } = extractNgrams(preprocess(r, tok, hypothesis), N);
  const refLen = closestRefLen(hypLen, refLens);
  const correct = new Array<number>(N).fill(0);
  const total = new Array<number>(N).fill(0);
  for (const [g, c] of hypNgrams) {
    let n = 0;
    for (let i = 0; i < g.length; i++) if (g.charCodeAt(i) === 32) n++;
    total[n] += c;
    const rc = refNgrams.get(g);
    if (rc !== undefined) correct[n] += Math.min(c, rc);
  }
  return [hypLen, refLen, ...correct, ...total];
}

/** Drops undefined/empty references as sacreBLEU does; throws when none is left. */
function usableRefs(refs: ReadonlyArray<string | null | undefined>, index: number): string[] {
  const lines = refs.filter((x): x is string => x !== null && x !== undefined && x !== '');
  if (lines.length === 0) {
    throw new EvalError('E_EVAL_ARGS', `BLEU: segment ${index} has no non-empty reference (sacreBLEU: "Empty or None reference sentence found.")`);
  }
  return lines;
}

/**
 * Statistics of one segment against its references, used as given: the caller drops empty ones
 * (sacreBLEU does) or, as `lora eval score` does for a line whose references are all empty, passes
 * `['']` to count the hypothesis against a reference with no tokens.
 */
export function bleuSegmentStatistics(hypothesis: string, references: readonly string[], options?: BleuOptions): BleuStats {
  const r = resolve(options, false);
  return segmentStats(r, tokenizerFor(r.tokenize), hypothesis, references.length > 0 ? references : ['']);
}

/**
 * Per-segment statistics for a corpus. `references` is in sacreBLEU's layout: a list of reference
 * *streams*, each as long as `hypotheses` (`references[k][i]` is the k-th reference of segment i).
 */
export function bleuStatistics(
  hypotheses: readonly string[],
  references: ReadonlyArray<ReadonlyArray<string | null | undefined>>,
  options?: BleuOptions,
): BleuStats[] {
  const r = resolve(options, false);
  const tok = tokenizerFor(r.tokenize);
  if (references.length === 0) throw new EvalError('E_EVAL_ARGS', 'BLEU: no reference streams given');
  for (const [k, stream] of references.entries()) {
    if (stream.length !== hypotheses.length) {
      throw new EvalError('E_EVAL_ARGS', `BLEU: reference stream ${k} has ${stream.length} segments but there are ${hypotheses.length} hypotheses`);
    }
  }
  return hypotheses.map((hyp, i) => segmentStats(r, tok, hyp, usableRefs(references.map((s) => s[i]), i)));
}

function myLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

/**
 * BLEU from sufficient statistics, as sacreBLEU's `BLEU.compute_bleu` (whose smoothing default, when
 * called directly like this, is 'none').
 */
export function computeBleu(
  correctIn: readonly number[],
  totalIn: readonly number[],
  sysLen: number,
  refLen: number,
  options: { smoothMethod?: BleuSmoothMethod; smoothValue?: number; effectiveOrder?: boolean; maxNgramOrder?: number } = {},
): BleuScore {
  const smoothMethod = options.smoothMethod ?? 'none';
  if (!Object.hasOwn(SMOOTH_DEFAULTS, smoothMethod)) throw new EvalError('E_EVAL_ARGS', `BLEU: unknown smoothing method '${String(smoothMethod)}'`);
  const smoothValue = options.smoothValue ?? SMOOTH_DEFAULTS[smoothMethod] ?? 0;
  const maxOrder = options.maxNgramOrder ?? 4;
  const correct = correctIn.slice();
  const total = totalIn.slice();
  const ratio = refLen ? sysLen / refLen : 0;

  let bp: number;
  if (sysLen < refLen) bp = sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0;
  else bp = 1;

  const precisions = new Array<number>(maxOrder).fill(0);
  if (!correct.some((c) => c !== 0)) {
    return { score: 0, counts: correct, totals: total, precisions, bp, sysLen, refLen, ratio };
  }

  let smoothMteval = 1;
  let effOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (smoothMethod === 'add-k' && n > 1) {
      correct[n - 1] += smoothValue;
      total[n - 1] += smoothValue;
    }
    if (total[n - 1] === 0) break;
    if (options.effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (smoothMethod === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * total[n - 1]);
      } else if (smoothMethod === 'floor') {
        precisions[n - 1] = (100 * smoothValue) / total[n - 1];
      }
    } else {
      precisions[n - 1] = (100 * correct[n - 1]) / total[n - 1];
    }
  }
  let sum = 0;
  for (let i = 0; i < effOrder; i++) sum += myLog(precisions[i]);
  const score = bp * Math.exp(sum / effOrder);
  return { score, counts: correct, totals: total, precisions, bp, sysLen, refLen, ratio };
}

/** Adds up per-segment statistics and scores them. */
export function bleuFromStatistics(stats: readonly BleuStats[], options?: BleuOptions, effectiveDefault = false): BleuScore {
  const r = resolve(options, effectiveDefault);
  const N = r.maxNgramOrder;
  const sum = new Array<number>(2 + 2 * N).fill(0);
  for (const s of stats) {
    if (s.length !== sum.length) throw new EvalError('E_EVAL_ARGS', `BLEU: statistics of length ${s.length}, expected ${sum.length}`);
    for (let i = 0; i < sum.length; i++) sum[i] += s[i];
  }
  return computeBleu(sum.slice(2, 2 + N), sum.slice(2 + N), sum[0], sum[1], {
    smoothMethod: r.smoothMethod,
    smoothValue: r.smoothValue,
    effectiveOrder: r.effectiveOrder,
    maxNgramOrder: N,
  });
}

/**
 * Corpus BLEU as `sacrebleu.corpus_bleu(hypotheses, references)`; `references` is a list of reference
 * streams (sacreBLEU's layout). Defaults: 13a, smoothing 'exp', no effective order.
 */
export function corpusBleu(
  hypotheses: readonly string[],
  references: ReadonlyArray<ReadonlyArray<string | null | undefined>>,
  options?: BleuOptions,
): BleuScore {
  return bleuFromStatistics(bleuStatistics(hypotheses, references, options), options, false);
}

/**
 * Sentence BLEU as `sacrebleu.sentence_bleu(hypothesis, references)`: one hypothesis against one or
 * more references, smoothing 'exp' and effective order on by default.
 */
export function sentenceBleu(hypothesis: string, references: readonly string[], options?: BleuOptions): BleuScore {
  const opts: BleuOptions = { ...options, effectiveOrder: options?.effectiveOrder ?? true };
  return corpusBleu([hypothesis], references.map((ref) => [ref]), opts);
}

/** Converts per-segment reference lists (`perSegment[i]` = references of segment i) to streams. */
export function referenceStreams(perSegment: ReadonlyArray<readonly string[]>): Array<Array<string | undefined>> {
  const k = perSegment.reduce((m, refs) => Math.max(m, refs.length), 0);
  const streams: Array<Array<string | undefined>> = [];
  for (let j = 0; j < k; j++) streams.push(perSegment.map((refs) => refs[j]));
  return streams;
}
