// BLEU against sacreBLEU. sacreBLEU is not packaged by Debian, so the expected values are the ones
// pinned by sacreBLEU's own test suite (test/test_bleu.py and test/test_sentence_bleu.py of
// github.com/mjpost/sacrebleu, v2.x) and its README example; the tolerance is theirs where they give
// one (1e-8 for corpus BLEU, 1e-3 for the sentence-BLEU table), never looser than 4 decimals.
import { describe, expect, it } from 'vitest';

import {
  EvalError,
  computeBleu,
  corpusBleu,
  referenceStreams,
  sentenceBleu,
  tokenize13a,
  tokenizeChar,
  tokenizeIntl,
  type BleuOptions,
} from '../src/eval/index.js';

// sacreBLEU README / test_bleu.py
const REFS = [
  ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
  ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
];
const HYPS = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];

// sacrebleu.raw_corpus_bleu: 'floor' smoothing, no tokenisation, effective order.
function rawCorpusBleu(hyps: string[], refs: string[][], smoothValue?: number): ReturnType<typeof corpusBleu> {
  return corpusBleu(hyps, refs, { smoothMethod: 'floor', smoothValue, tokenize: 'none', effectiveOrder: true });
}

describe('corpus BLEU (sacreBLEU corpus_bleu)', () => {
  it('README example: score, counts, totals, precisions, BP and lengths', () => {
    const b = corpusBleu(HYPS, REFS);
    expect(b.score).toBeCloseTo(48.530827, 6);
    expect(b.counts).toEqual([14, 7, 5, 3]);
    expect(b.totals).toEqual([17, 14, 11, 8]);
    // README: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)"
    expect(b.precisions.map((p) => p.toFixed(1))).toEqual(['82.4', '50.0', '45.5', '37.5']);
    expect(b.bp.toFixed(3)).toBe('0.943');
    expect(b.ratio.toFixed(3)).toBe('0.944');
    expect(b.sysLen).toBe(17);
    expect(b.refLen).toBe(18);
  });

  it.each<[string, BleuOptions, number]>([
    ['default', {}, 48.530827],
    ['tokenize none', { tokenize: 'none' }, 49.1919566],
    ['tokenize 13a', { tokenize: '13a' }, 48.530827],
    ['tokenize intl', { tokenize: 'intl' }, 43.91623493],
    ['smooth none', { smoothMethod: 'none' }, 48.530827],
  ])('test_corpus_bleu: %s', (_name, opts, expected) => {
    expect(Math.abs(corpusBleu(HYPS, REFS, opts).score - expected)).toBeLessThan(1e-6);
  });

  it('keeps empty hypotheses (scores 0, not an error)', () => {
    const b = corpusBleu(['', '', ''], REFS);
    expect(b.score).toBe(0);
    expect(b.sysLen).toBe(0);
  });

  it.each([
    [1, '77.65'],
    [2, '60.50'],
    [3, '53.93'],
    [4, '48.53'],
    [5, '46.14'],
    [6, '43.28'],
  ])('test_max_ngram_order: order %i', (order, expected) => {
    expect(corpusBleu(HYPS, REFS, { maxNgramOrder: order }).score.toFixed(2)).toBe(expected);
  });

  it.each<[string[], string[][], number]>([
    [['this is a test', 'another test'], [['ref1', 'ref2']], 0.0],
    [['this is a test'], [['this is a test']], 1.0],
    [['this is a fest'], [['this is a test']], 0.223606797749979],
  ])('test_raw_bleu %j', (hyps, refs, expected) => {
    expect(Math.abs(rawCorpusBleu(hyps, refs, 0.01).score / 100 - expected)).toBeLessThan(1e-8);
  });

  it.each<[string[], string[][], number]>([
    [['test'], [['a test']], 0.3678794411714425],
    [['a test'], [['a test']], 1.0],
    [['a little test'], [['a test']], 0.03218297948685433],
  ])('test_effective_order %j', (hyps, refs, expected) => {
    expect(Math.abs(rawCorpusBleu(hyps, refs, 0.01).score / 100 - expected)).toBeLessThan(1e-8);
  });

  it('test_statistics and test_offset', () => {
    const hyp = ['am I am a character sequence'];
    const ref = [['I am a symbol string sequence a a']];
    const r = rawCorpusBleu(hyp, ref, 0.01);
    expect(r.counts).toEqual([4, 2, 1, 0]);
    expect(r.totals).toEqual([6, 5, 4, 3]);
    expect(Math.abs(rawCorpusBleu(hyp, ref, 0.0).score / 100 - 0)).toBeLessThan(1e-8);
    expect(Math.abs(rawCorpusBleu(hyp, ref).score / 100 - 0.1555722182)).toBeLessThan(1e-8);
    expect(Math.abs(rawCorpusBleu(hyp, ref, 0.1).score / 100 - 0.1555722182)).toBeLessThan(1e-8);
  });

  it('test_scoring: compute_bleu from statistics', () => {
    expect(Math.abs(computeBleu([9, 7, 5, 3], [10, 8, 6, 4], 11, 11).score / 100 - 0.8375922397)).toBeLessThan(1e-8);
  });

  it.each<[number[], number[], number, number, number]>([
    [[0, 0, 0, 0], [4, 4, 2, 1], 0, 1, 0.0],
    [[0, 0, 0, 0], [10, 11, 12, 0], 14, 10, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.0],
    [[6, 5, 4, 0], [6, 5, 4, 3], 6, 6, 0.0],
    [[0, 0, 0, 0], [0, 0, 0, 0], 0, 0, 0.1],
    [[0, 0, 0, 0], [0, 0, 0, 0], 1, 5, 0.01],
  ])('test_degenerate_statistics %j %j sys=%i ref=%i floor=%f', (correct, total, sys, ref, offset) => {
    expect(computeBleu(correct, total, sys, ref, { smoothMethod: 'floor', smoothValue: offset }).score).toBe(0);
  });

  it('takes per-segment reference lists through referenceStreams, with variable counts', () => {
    const perSegment = [[REFS[0][0], REFS[1][0]], [REFS[0][1], REFS[1][1]], [REFS[0][2], REFS[1][2]]];
    expect(corpusBleu(HYPS, referenceStreams(perSegment)).score).toBeCloseTo(48.530827, 6);
    // a missing second reference is dropped for that segment, as sacreBLEU does with '' or None
    const ragged = referenceStreams([[REFS[0][0]], [REFS[0][1], REFS[1][1]], [REFS[0][2]]]);
    expect(ragged[1][0]).toBeUndefined();
    expect(() => corpusBleu(HYPS, ragged)).not.toThrow();
  });

  it('rejects a segment whose references are all empty, like sacreBLEU', () => {
    expect(() => corpusBleu(['a'], [['']])).toThrow(EvalError);
    expect(() => corpusBleu(['a'], [['']])).toThrow(/no non-empty reference/);
    expect(() => corpusBleu(['a', 'b'], [['a']])).toThrow(/1 segments but there are 2 hypotheses/);
    expect(() => corpusBleu(['a'], [['a']], { smoothMethod: 'bogus' as never })).toThrow(/unknown smoothing/);
  });
});

describe('sentence BLEU (sacreBLEU sentence_bleu)', () => {
  // test_sentence_bleu.py, example from sacreBLEU issue #98; EPSILON there is 1e-3.
  const REF = 'producţia de zahăr brut se exprimă în zahăr alb;';
  const SYS = 'Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;';
  it.each<[BleuOptions, number]>([
    [{ smoothMethod: 'exp' }, 8.493],
    [{ smoothMethod: 'none' }, 0.0],
    [{ smoothMethod: 'floor' }, 4.51688],
    [{ smoothMethod: 'floor', smoothValue: 0.1 }, 4.51688],
    [{ smoothMethod: 'floor', smoothValue: 0.5 }, 10.1],
    [{ smoothMethod: 'add-k' }, 14.882],
    [{ smoothMethod: 'add-k', smoothValue: 1 }, 14.882],
    [{ smoothMethod: 'add-k', smoothValue: 2 }, 21.389],
    [{ tokenize: 'none' }, 7.347],
    [{ tokenize: 'intl' }, 8.493],
    [{ tokenize: 'char' }, 40.8759],
    [{ tokenize: 'char', lowercase: true }, 42.0267],
  ])('%j', (opts, expected) => {
    expect(Math.abs(sentenceBleu(SYS, [REF], opts).score - expected)).toBeLessThan(1e-3);
  });

  it('defaults to exp smoothing with effective order', () => {
    expect(sentenceBleu(SYS, [REF]).score).toBeCloseTo(8.493, 3);
    // effective order: a 1-token hypothesis is scored on unigrams only
    expect(sentenceBleu('test', ['a test']).score).toBeCloseTo(36.787944117144235, 8);
  });

  it.each<BleuOptions>([
    { smoothMethod: 'exp' },
    { smoothMethod: 'none' },
    { smoothMethod: 'floor' },
    { smoothMethod: 'floor', smoothValue: 0.1 },
    { smoothMethod: 'add-k' },
    { smoothMethod: 'add-k', smoothValue: 1 },
  ])('no match at all scores 0 (sacreBLEU #141): %j', (opts) => {
    expect(sentenceBleu('this is a cat', ['okay thanks'], opts).score).toBe(0);
  });

  it('empty hypothesis scores 0', () => {
    expect(sentenceBleu('', ['a reference']).score).toBe(0);
  });
});

describe('tokenizers', () => {
  it('13a splits punctuation except inside numbers, unescapes entities and joins hyphenated line breaks', () => {
    // the apostrophe (0x27) is outside 13a's punctuation ranges, so contractions stay whole
    expect(tokenize13a("It wasn't surprising.")).toBe("It wasn't surprising .");
    expect(tokenize13a('Pay $3,000.50 now, or 1-2 days.')).toBe('Pay $ 3,000.50 now , or 1 - 2 days .');
    expect(tokenize13a('a &quot;b&quot; &amp; c&lt;d&gt;')).toBe('a " b " & c < d >');
    expect(tokenize13a('exam-\nple<skipped> end')).toBe('example end');
    expect(tokenize13a('  f(x) = x[0] + y{1};  ')).toBe('f ( x ) = x [ 0 ] + y { 1 } ;');
    expect(tokenize13a('')).toBe('');
  });

  it('intl separates Unicode punctuation and symbols', () => {
    expect(tokenizeIntl('Hello, «world»! 3.14 €5')).toBe('Hello , « world » ! 3.14 € 5');
  });

  it('char makes every code point a token', () => {
    expect(tokenizeChar('ab 😀')).toBe('a b   😀');
  });

  it('splits on Python whitespace, not JavaScript whitespace', () => {
    // U+001F is whitespace to Python's str.split(), U+FEFF is not.
    expect(sentenceBleu('a\u001fb', ['a b']).score).toBeCloseTo(100, 8);
    expect(corpusBleu(['a\ufeffb'], [['a b']]).sysLen).toBe(1);
  });
});

describe('argument checks', () => {
  it('does not take inherited property names for smoothing methods', () => {
    expect(() => corpusBleu(['a'], [['a']], { smoothMethod: 'toString' as never })).toThrow(/unknown smoothing/);
    expect(() => computeBleu([1], [1], 1, 1, { smoothMethod: 'constructor' as never, maxNgramOrder: 1 })).toThrow(/unknown smoothing/);
    expect(() => corpusBleu(['a'], [['a']], { maxNgramOrder: 0 })).toThrow(/maxNgramOrder/);
    expect(() => corpusBleu(['a'], [['a']], { tokenize: 'moses' as never })).toThrow(/unknown tokenizer/);
    expect(() => corpusBleu(['a'], [])).toThrow(/no reference streams/);
  });
});
