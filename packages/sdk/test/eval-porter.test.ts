// The Porter stemmer against NLTK 3.8's PorterStemmer: fixtures/eval/nltk-reference.json holds the
// stems NLTK itself computed (scripts/eval-reference/make_reference.py) for 3,345 words in each mode.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { PorterStemmer, defaultStemmer, type PorterMode } from '../src/eval/index.js';

const REF = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'eval', 'nltk-reference.json'), 'utf8')) as {
  nltk: string;
  porter: { words: string[] } & Record<PorterMode, string[]>;
};

describe('Porter stemmer (NLTK)', () => {
  it.each<PorterMode>(['NLTK_EXTENSIONS', 'MARTIN_EXTENSIONS', 'ORIGINAL_ALGORITHM'])('%s agrees with NLTK on every word', (mode) => {
    const s = new PorterStemmer(mode);
    const got = REF.porter.words.map((w) => s.stem(w));
    const wrong = REF.porter.words.filter((w, i) => got[i] !== REF.porter[mode][i]).map((w) => `${w}: ${s.stem(w)}`);
    expect(wrong).toEqual([]);
    expect(REF.porter.words.length).toBeGreaterThan(3000);
  });

  it('defaults to NLTK_EXTENSIONS, the mode METEOR and rouge-score use', () => {
    expect(defaultStemmer().mode).toBe('NLTK_EXTENSIONS');
    expect(['generalizations', 'dying', 'skies', 'happily', 'analogousli'].map((w) => defaultStemmer().stem(w))).toEqual([
      'gener',
      'die',
      'sky',
      'happili',
      'analog',
    ]);
  });

  it('rejects an unknown mode', () => {
    expect(() => new PorterStemmer('NOPE' as PorterMode)).toThrow(/mode must be/);
  });
});
