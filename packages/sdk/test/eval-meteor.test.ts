// METEOR against NLTK 3.8's meteor_score with WordNet 3.0: fixtures/eval/nltk-reference.json holds the
// scores NLTK itself computed (scripts/eval-reference/make_reference.py) for its doctest examples,
// sacreBLEU's and rouge-score's README examples, code, empty strings, Unicode and 60 random pairs,
// with and without the synonym stage, plus the synonym sets NLTK's METEOR builds for 472 words.
// The WordNet-dependent tests need Debian's wordnet-base (scripts/setup-system.sh installs it) and
// skip with a printed reason where it is absent.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import {
  EvalError,
  countChunks,
  findWordNetDir,
  loadWordNet,
  meteorAlign,
  meteorScore,
  PorterStemmer,
  singleMeteorScore,
  treebankTokenize,
  WordNet,
} from '../src/eval/index.js';

interface MeteorCase {
  name: string;
  hypothesis: string;
  references: string[];
  meteor: number;
  meteor_no_synonyms: number;
  meteor_alpha_beta_gamma: number;
  meteor_treebank: number;
}
const REF = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'eval', 'nltk-reference.json'), 'utf8')) as {
  nltk: string;
  wordnet: string;
  wordnet_synonyms: Record<string, string[]>;
  meteor: MeteorCase[];
  treebank: Array<{ text: string; tokens: string[] }>;
};

// The reference scores were computed on str.split() tokens (and, for meteor_treebank, on
// word_tokenize(text, preserve_line=True) tokens, this library's default).
const WS = { tokenize: 'whitespace' } as const;

const WORDNET_DIR = findWordNetDir();
if (!WORDNET_DIR) {
  console.log('eval-meteor: WordNet not found; skipping the synonym-stage tests (install it with `bash scripts/setup-system.sh` or `apt-get install wordnet-base`)');
}
const withWordNet = WORDNET_DIR ? it : it.skip;

// NLTK's doctest (nltk/translate/meteor_score.py)
const H1 = ['It', 'is', 'a', 'guide', 'to', 'action', 'which', 'ensures', 'that', 'the', 'military', 'always', 'obeys', 'the', 'commands', 'of', 'the', 'party'];
const R1 = ['It', 'is', 'a', 'guide', 'to', 'action', 'that', 'ensures', 'that', 'the', 'military', 'will', 'forever', 'heed', 'Party', 'commands'];
const R2 = ['It', 'is', 'the', 'guiding', 'principle', 'which', 'guarantees', 'the', 'military', 'forces', 'always', 'being', 'under', 'the', 'command', 'of', 'the', 'Party'];
const R3 = ['It', 'is', 'the', 'practical', 'guide', 'for', 'the', 'army', 'always', 'to', 'heed', 'the', 'directions', 'of', 'the', 'party'];

describe('METEOR (NLTK meteor_score)', () => {
  withWordNet('NLTK doctest: 0.6944 for single and multiple references; 0.0 without any match', () => {
    expect(singleMeteorScore(R1, H1)).toBeCloseTo(0.6944, 4);
    expect(meteorScore([R1, R2, R3], H1)).toBeCloseTo(0.6944, 4);
    expect(singleMeteorScore(['this', 'is', 'a', 'cat'], ['non', 'matching', 'hypothesis'])).toBe(0);
  });

  withWordNet('agrees with NLTK on every reference pair (synonyms on, default alpha/beta/gamma)', () => {
    const wrong = REF.meteor
      .map((c) => ({ name: c.name, got: meteorScore(c.references, c.hypothesis, WS), want: c.meteor }))
      .filter((r) => Math.abs(r.got - r.want) > 5e-4);
    expect(wrong).toEqual([]);
    // and in fact to the last bit or so
    for (const c of REF.meteor) expect(meteorScore(c.references, c.hypothesis, WS)).toBeCloseTo(c.meteor, 12);
  });

  withWordNet('agrees with NLTK with alpha=0.85, beta=0.2, gamma=0.6', () => {
    for (const c of REF.meteor) {
      expect(meteorScore(c.references, c.hypothesis, { ...WS, alpha: 0.85, beta: 0.2, gamma: 0.6 })).toBeCloseTo(c.meteor_alpha_beta_gamma, 12);
    }
  });

  it('agrees with NLTK without the synonym stage (exact + stem only; no WordNet needed)', () => {
    for (const c of REF.meteor) {
      expect(meteorScore(c.references, c.hypothesis, { ...WS, synonyms: false }), c.name).toBeCloseTo(c.meteor_no_synonyms, 12);
    }
  });

  withWordNet('agrees with NLTK on word_tokenize(preserve_line=True) tokens, the default tokenizer', () => {
    for (const c of REF.meteor) expect(meteorScore(c.references, c.hypothesis), c.name).toBeCloseTo(c.meteor_treebank, 12);
  });

  it("tokenizes like NLTK's word_tokenize(text, preserve_line=True)", () => {
    const wrong = REF.treebank.filter((c) => JSON.stringify(treebankTokenize(c.text)) !== JSON.stringify(c.tokens));
    expect(wrong).toEqual([]);
    expect(REF.treebank.length).toBeGreaterThan(200);
    // NLTK's own doctest
    expect(treebankTokenize('Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.')).toEqual(
      ['Good', 'muffins', 'cost', '$', '3.88', '(', 'roughly', '3,36', 'euros', ')', 'in', 'New', 'York.', 'Please', 'buy', 'me', 'two', 'of', 'them.', 'Thanks', '.'],
    );
    expect(() => meteorScore(['a'], 'a', { synonyms: false, tokenize: 'moses' as never })).toThrow(/unknown tokenizer/);
  });

  withWordNet("builds NLTK's synonym sets (morphy, exception lists, lemma names without '_')", () => {
    const wn = loadWordNet();
    const wrong: string[] = [];
    for (const [w, want] of Object.entries(REF.wordnet_synonyms)) {
      const got = [...wn.synonyms(w)].sort();
      if (JSON.stringify(got) !== JSON.stringify([...want].sort())) wrong.push(w);
    }
    expect(wrong).toEqual([]);
    expect(wn.morphy('geese', 'n')).toEqual(['goose']);
    expect(wn.morphy('running', 'v')).toEqual(['run']);
    expect(wn.synonyms('automobile').has('car')).toBe(true);
  });

  it('the reference file covers the published examples and edge cases', () => {
    const names = new Set(REF.meteor.map((c) => c.name));
    for (const n of ['nltk-doctest-single', 'nltk-doctest-multi-h1', 'sacrebleu-readme-1', 'rouge-readme', 'code-1', 'empty-hypothesis', 'empty-reference', 'unicode-1']) {
      expect(names.has(n), n).toBe(true);
    }
    expect(REF.meteor.find((c) => c.name === 'nltk-doctest-single')?.meteor).toBeCloseTo(0.6944444444444445, 12);
    expect(REF.nltk).toMatch(/^3\./);
    expect(REF.wordnet).toBe('3.0');
  });

  it('aligns greedily from the end, carries stems into the synonym stage and counts chunks like NLTK', () => {
    const stem = new PorterStemmer();
    // "the" matches the last "the" of the reference first
    expect(meteorAlign(['the', 'cat'], ['the', 'the', 'cat'], stem, null)).toEqual([
      [0, 1],
      [1, 2],
    ]);
    expect(countChunks([])).toBe(1);
    expect(countChunks([[0, 0], [1, 1], [3, 2]])).toBe(2);
    expect(meteorAlign(['Running'], ['runs'], stem, null)).toEqual([[0, 0]]);
  });

  it('scores 0 for empty sides and takes strings split on whitespace or token arrays', () => {
    expect(meteorScore([''], 'a b', { synonyms: false })).toBe(0);
    expect(meteorScore(['a b'], '', { synonyms: false })).toBe(0);
    expect(meteorScore(['the cat sat'], 'the cat sat', { synonyms: false })).toBeCloseTo(singleMeteorScore(['the', 'cat', 'sat'], ['the', 'cat', 'sat'], { synonyms: false }), 15);
    expect(() => meteorScore([], 'x', { synonyms: false })).toThrow(EvalError);
  });

  it('fails with a message saying what to install when WordNet is absent', () => {
    const empty = mkdtempSync(join(tmpdir(), 'no-wordnet-'));
    writeFileSync(join(empty, 'index.noun'), '');
    let err: unknown;
    try {
      meteorScore(['a'], 'a', { wordnet: empty });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EvalError);
    expect((err as EvalError).code).toBe('E_WORDNET_MISSING');
    expect((err as EvalError).message).toMatch(/apt-get install wordnet-base/);
    expect((err as EvalError).message).toMatch(/LORA_WORDNET_DIR/);
    expect((err as EvalError).message).toMatch(/synonyms: false/);
    expect(() => WordNet.open(empty)).toThrow(/WordNet data not found in /);
    // without the synonym stage nothing is needed
    expect(meteorScore(['a'], 'a', { synonyms: false, wordnet: empty })).toBeGreaterThan(0);
  });
});
