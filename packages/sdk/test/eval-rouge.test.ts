// ROUGE against Google's rouge-score. rouge-score is not packaged by Debian, so the expected values
// are those of its own tests (rouge/rouge_scorer_test.py of github.com/google-research/google-research,
// whose "ground truth" comes from runs of the official ROUGE-1.5.5) on its test data, copied to
// fixtures/eval/rouge-*.txt, and the README example of RougeScorer.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { EvalError, rougeScore, rougeScoreMulti, rougeTokenize } from '../src/eval/index.js';

const FIX = join(import.meta.dirname, 'fixtures', 'eval');
// Python's f.readlines(): lines keep their '\n'.
const readlines = (f: string): string[] => readFileSync(join(FIX, f), 'utf8').split(/(?<=\n)/);
const TARGETS = readlines('rouge-target.txt');
const PREDICTIONS = readlines('rouge-prediction.txt');

function expectPRF(s: { precision: number; recall: number; fmeasure: number }, p: number, r: number, f: number, places = 5): void {
  expect(s.precision).toBeCloseTo(p, places);
  expect(s.recall).toBeCloseTo(r, places);
  expect(s.fmeasure).toBeCloseTo(f, places);
}

describe('ROUGE (rouge-score RougeScorer)', () => {
  it('README example: The quick brown fox ... vs The quick brown dog ...', () => {
    const s = rougeScore('The quick brown fox jumps over the lazy dog', 'The quick brown dog jumps on the log.');
    // rouge1: 6 of 8 predicted and 6 of 9 target unigrams; rougeL: LCS "the quick brown jumps the" = 5
    expectPRF(s.rouge1, 0.75, 0.6666666666666666, 0.7058823529411765, 10);
    expectPRF(s.rouge2, 0.2857142857142857, 0.25, 0.26666666666666666, 10);
    expectPRF(s.rougeL, 0.625, 0.5555555555555556, 0.5882352941176471, 10);
    expectPRF(s.rougeLsum, 0.625, 0.5555555555555556, 0.5882352941176471, 10);
    const stemmed = rougeScore('The quick brown fox jumps over the lazy dog', 'The quick brown dog jumps on the log.', {
      rougeTypes: ['rouge1', 'rougeL'],
      useStemmer: true,
    });
    expect(stemmed.rouge1.fmeasure).toBeCloseTo(0.7058823529411765, 10);
    expect(stemmed.rougeL.fmeasure).toBeCloseTo(0.5882352941176471, 10);
  });

  it('testRouge1 / testRouge2 / testRougeL*', () => {
    expectPRF(rougeScore('testing one two', 'testing', { rougeTypes: ['rouge1'] }).rouge1, 1, 1 / 3, 1 / 2);
    expectPRF(rougeScore('testing one two', 'testing one', { rougeTypes: ['rouge2'] }).rouge2, 1, 1 / 2, 2 / 3);
    expectPRF(rougeScore('testing one two', 'testing one', { rougeTypes: ['rougeL'] }).rougeL, 1, 2 / 3, 4 / 5);
    expectPRF(rougeScore('testing one two', 'testing two', { rougeTypes: ['rougeL'] }).rougeL, 1, 2 / 3, 4 / 5);
    const multi = rougeScore('testing one two', 'testing one', { rougeTypes: ['rouge1', 'rougeL'] });
    expect(Object.keys(multi).sort()).toEqual(['rouge1', 'rougeL']);
    expectPRF(multi.rouge1, 1, 2 / 3, 4 / 5);
  });

  it.each(['rouge1', 'rouge2', 'rougeL', 'rougeLsum'] as const)('testRougeEmpty: %s', (t) => {
    expectPRF(rougeScore('testing one two', '', { rougeTypes: [t] })[t], 0, 0, 0);
  });

  it('rejects invalid types and accepts rouge1..rouge9', () => {
    for (const t of ['rougen', 'rouge0', 'rouge10']) {
      expect(() => rougeScore('testing one two', 'testing', { rougeTypes: [t as never] })).toThrow(EvalError);
    }
    for (const t of ['rouge1', 'rouge9', 'rougeL', 'rougeLsum'] as const) {
      expect(Object.keys(rougeScore('testing one two', 'testing', { rougeTypes: [t] }))).toEqual([t]);
    }
  });

  it('agrees with ROUGE-1.5.5 on rouge-score test data (rouge1, rouge2, rougeL; with and without stemming)', () => {
    const r = (i: number, stem: boolean) =>
      rougeScore(TARGETS[i], PREDICTIONS[i], { rougeTypes: ['rouge1', 'rouge2', 'rougeL'], useStemmer: stem });
    expectPRF(r(0, false).rouge1, 0.6875, 0.40741, 0.51163);
    expectPRF(r(1, false).rouge1, 0.65385, 0.40476, 0.5);
    expectPRF(r(0, true).rouge1, 0.6875, 0.40741, 0.51163);
    expectPRF(r(1, true).rouge1, 0.69231, 0.42857, 0.52941);
    expectPRF(r(0, false).rouge2, 0.53333, 0.30769, 0.39024);
    expectPRF(r(1, false).rouge2, 0.48, 0.29268, 0.36364);
    expectPRF(r(0, true).rouge2, 0.53333, 0.30769, 0.39024);
    expectPRF(r(1, true).rouge2, 0.48, 0.29268, 0.36364);
    expectPRF(r(0, false).rougeL, 0.6875, 0.40741, 0.51163);
    expectPRF(r(1, false).rougeL, 0.65385, 0.40476, 0.5);
  });

  it('testRougeLSumAgainstRouge155WithStemming (multi-line summaries)', () => {
    const target = readFileSync(join(FIX, 'rouge-target_multi.0.txt'), 'utf8');
    const prediction = readFileSync(join(FIX, 'rouge-prediction_multi.0.txt'), 'utf8');
    const s = rougeScore(target, prediction, { rougeTypes: ['rougeLsum'], useStemmer: true });
    expectPRF(s.rougeLsum, 0.66667, 0.36538, 0.47205);
  });

  it('testRougeLsum: union LCS over newline-separated sentences, and its empty cases', () => {
    expectPRF(rougeScore('w1 w2 w3 w4 w5', 'w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5', { rougeTypes: ['rougeLsum'] }).rougeLsum, 0.4, 0.8, 0.5333, 3);
    for (const [t, p] of [
      ['w1 w2 w3 w4 w5', ''],
      ['', 'w1'],
      ['w1 w2 w3 w4 w5', '/'],
    ]) {
      expectPRF(rougeScore(t, p, { rougeTypes: ['rougeLsum'] }).rougeLsum, 0, 0, 0, 3);
    }
  });

  it('score_multi keeps, per type, the reference with the best F (first on ties)', () => {
    const s = rougeScoreMulti(['the cat sat', 'a dog sat on the mat'], 'the dog sat on the mat');
    expect(s.rouge1.fmeasure).toBeCloseTo(rougeScore('a dog sat on the mat', 'the dog sat on the mat').rouge1.fmeasure, 12);
    const tie = rougeScoreMulti(['x y', 'y x'], 'x y z', { rougeTypes: ['rouge1'] });
    expect(tie.rouge1).toEqual(rougeScore('x y', 'x y z', { rougeTypes: ['rouge1'] }).rouge1);
    expect(() => rougeScoreMulti([], 'x')).toThrow(EvalError);
  });
});

describe('rouge-score tokenizer', () => {
  it('lowercases, keeps [a-z0-9] runs and drops everything else (non-ASCII letters too)', () => {
    expect(rougeTokenize("The quick-brown fox's 2nd café, naïve!")).toEqual(['the', 'quick', 'brown', 'fox', 's', '2nd', 'caf', 'na', 've']);
    expect(rougeTokenize('def add(a, b): return a+b')).toEqual(['def', 'add', 'a', 'b', 'return', 'a', 'b']);
    expect(rougeTokenize('東京 😀 ---')).toEqual([]);
  });

  it('stems only tokens longer than 3 characters', () => {
    // 'was' would stem to 'wa' but has only 3 characters
    expect(rougeTokenize('dogs cats running ties was flies', true)).toEqual(['dog', 'cat', 'run', 'tie', 'was', 'fli']);
  });
});
