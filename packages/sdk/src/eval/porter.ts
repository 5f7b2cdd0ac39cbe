/**
 * The Porter stemmer as NLTK's `nltk.stem.porter.PorterStemmer` computes it, in its three modes.
 *
 * NLTK's default mode, `NLTK_EXTENSIONS`, is what both reference implementations we agree with use:
 * NLTK's `meteor_score` (its default `PorterStemmer()`) and Google's `rouge-score` (whose
 * `DefaultTokenizer` builds `porter.PorterStemmer()` with no arguments).
 *
 * Words are handled as sequences of Unicode code points, as Python's `str` is, so that lengths and
 * positions agree with NLTK for text outside the Basic Multilingual Plane too.
 */

export type PorterMode = 'NLTK_EXTENSIONS' | 'MARTIN_EXTENSIONS' | 'ORIGINAL_ALGORITHM';

type Word = string[];
type Condition = ((stem: Word) => boolean) | null;
/** A rule: suffix ('*d' means "ends in a double consonant"), replacement, condition on the stem. */
type Rule = [string, string, Condition];

const VOWELS = new Set(['a', 'e', 'i', 'o', 'u']);

// Irregular forms NLTK_EXTENSIONS maps straight to a stem (form -> stem).
const IRREGULAR: Record<string, string[]> = {
  sky: ['sky', 'skies'],
  die: ['dying'],
  lie: ['lying'],
  tie: ['tying'],
  news: ['news'],
  inning: ['innings', 'inning'],
  outing: ['outings', 'outing'],
  canning: ['cannings', 'canning'],
  howe: ['howe'],
  proceed: ['proceed'],
  exceed: ['exceed'],
  succeed: ['succeed'],
};

function endsWith(word: Word, suffix: string): boolean {
  const s = Array.from(suffix);
  if (s.length > word.length) return false;
  for (let i = 0; i < s.length; i++) if (word[word.length - s.length + i] !== s[i]) return false;
  return true;
}

function cut(word: Word, suffix: string): Word {
  const n = Array.from(suffix).length;
  return n === 0 ? word.slice() : word.slice(0, word.length - n);
}

function plus(stem: Word, replacement: string): Word {
  return replacement === '' ? stem.slice() : stem.concat(Array.from(replacement));
}

export class PorterStemmer {
  readonly mode: PorterMode;
  private readonly pool = new Map<string, string>();
  private readonly cache = new Map<string, string>();

  constructor(mode: PorterMode = 'NLTK_EXTENSIONS') {
    if (mode !== 'NLTK_EXTENSIONS' && mode !== 'MARTIN_EXTENSIONS' && mode !== 'ORIGINAL_ALGORITHM') {
      throw new TypeError(`PorterStemmer: mode must be NLTK_EXTENSIONS, MARTIN_EXTENSIONS or ORIGINAL_ALGORITHM, got ${String(mode)}`);
    }
    this.mode = mode;
    if (mode === 'NLTK_EXTENSIONS') {
      for (const [stem, forms] of Object.entries(IRREGULAR)) for (const f of forms) this.pool.set(f, stem);
    }
  }

  /** Stems one word; lowercases it first unless `toLowercase` is false (as NLTK's `stem`). */
  stem(word: string, toLowercase = true): string {
    const key = toLowercase ? `1${word}` : `0${word}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const out = this.stemUncached(word, toLowercase);
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(key, out);
    return out;
  }

  private stemUncached(word: string, toLowercase: boolean): string {
    const lowered = toLowercase ? word.toLowerCase() : word;
    // NLTK looks the *original* word up in the pool and returns the pool entry of the lowered one.
    if (this.mode === 'NLTK_EXTENSIONS' && this.pool.has(word)) {
      const p = this.pool.get(lowered);
      if (p !== undefined) return p;
    }
    const cps = Array.from(word);
    if (this.mode !== 'ORIGINAL_ALGORITHM' && cps.length <= 2) return lowered;
    let s = Array.from(lowered);
    s = this.step1a(s);
    s = this.step1b(s);
    s = this.step1c(s);
    s = this.step2(s);
    s = this.step3(s);
    s = this.step4(s);
    s = this.step5a(s);
    s = this.step5b(s);
    return s.join('');
  }

  private isConsonant(word: Word, i: number): boolean {
    const c = word[i];
    if (VOWELS.has(c)) return false;
    if (c === 'y') return i === 0 ? true : !this.isConsonant(word, i - 1);
    return true;
  }

  /** m in `[C](VC)^m[V]`: the number of vowel-consonant transitions. */
  private measure(stem: Word): number {
    let m = 0;
    let prevVowel = false;
    for (let i = 0; i < stem.length; i++) {
      const cons = this.isConsonant(stem, i);
      if (cons && prevVowel) m++;
      prevVowel = !cons;
    }
    return m;
  }

  private readonly positive = (stem: Word): boolean => this.measure(stem) > 0;

  private containsVowel(stem: Word): boolean {
    for (let i = 0; i < stem.length; i++) if (!this.isConsonant(stem, i)) return true;
    return false;
  }

  private endsDoubleConsonant(word: Word): boolean {
    const n = word.length;
    return n >= 2 && word[n - 1] === word[n - 2] && this.isConsonant(word, n - 1);
  }

  private endsCvc(word: Word): boolean {
    const n = word.length;
    return (
      (n >= 3 &&
        this.isConsonant(word, n - 3) &&
        !this.isConsonant(word, n - 2) &&
        this.isConsonant(word, n - 1) &&
        !['w', 'x', 'y'].includes(word[n - 1])) ||
      (this.mode === 'NLTK_EXTENSIONS' && n === 2 && !this.isConsonant(word, 0) && this.isConsonant(word, 1))
    );
  }

  /** The first rule whose suffix matches decides, whether or not its condition holds. */
  private applyRules(word: Word, rules: Rule[]): Word {
    for (const [suffix, replacement, condition] of rules) {
      if (suffix === '*d' && this.endsDoubleConsonant(word)) {
        const stem = word.slice(0, word.length - 2);
        return condition === null || condition(stem) ? plus(stem, replacement) : word;
      }
      if (endsWith(word, suffix)) {
        const stem = cut(word, suffix);
        return condition === null || condition(stem) ? plus(stem, replacement) : word;
      }
    }
    return word;
  }

  private step1a(word: Word): Word {
    if (this.mode === 'NLTK_EXTENSIONS' && endsWith(word, 'ies') && word.length === 4) {
      return plus(cut(word, 'ies'), 'ie');
    }
    return this.applyRules(word, [
      ['sses', 'ss', null],
      ['ies', 'i', null],
      ['ss', 'ss', null],
      ['s', '', null],
    ]);
  }

  private step1b(word: Word): Word {
    if (this.mode === 'NLTK_EXTENSIONS' && endsWith(word, 'ied')) {
      return plus(cut(word, 'ied'), word.length === 4 ? 'ie' : 'i');
    }
    if (endsWith(word, 'eed')) {
      const stem = cut(word, 'eed');
      return this.measure(stem) > 0 ? plus(stem, 'ee') : word;
    }
    let intermediate: Word | null = null;
    for (const suffix of ['ed', 'ing']) {
      if (endsWith(word, suffix)) {
        const stem = cut(word, suffix);
        if (this.containsVowel(stem)) {
          intermediate = stem;
          break;
        }
      }
    }
    if (intermediate === null) return word;
    const last = intermediate[intermediate.length - 1];
    return this.applyRules(intermediate, [
      ['at', 'ate', null],
      ['bl', 'ble', null],
      ['iz', 'ize', null],
      ['*d', last, () => !['l', 's', 'z'].includes(last)],
      ['', 'e', (stem) => this.measure(stem) === 1 && this.endsCvc(stem)],
    ]);
  }

  private step1c(word: Word): Word {
    const nltk = (stem: Word): boolean => stem.length > 1 && this.isConsonant(stem, stem.length - 1);
    const original = (stem: Word): boolean => this.containsVowel(stem);
    return this.applyRules(word, [['y', 'i', this.mode === 'NLTK_EXTENSIONS' ? nltk : original]]);
  }

  private step2(word: Word): Word {
    if (this.mode === 'NLTK_EXTENSIONS' && endsWith(word, 'alli') && this.positive(cut(word, 'alli'))) {
      return this.step2(plus(cut(word, 'alli'), 'al'));
    }
    const p = this.positive;
    const rules: Rule[] = [
      ['ational', 'ate', p],
      ['tional', 'tion', p],
      ['enci', 'ence', p],
      ['anci', 'ance', p],
      ['izer', 'ize', p],
      this.mode === 'ORIGINAL_ALGORITHM' ? ['abli', 'able', p] : ['bli', 'ble', p],
      ['alli', 'al', p],
      ['entli', 'ent', p],
      ['eli', 'e', p],
      ['ousli', 'ous', p],
      ['ization', 'ize', p],
      ['ation', 'ate', p],
      ['ator', 'ate', p],
      ['alism', 'al', p],
      ['iveness', 'ive', p],
      ['fulness', 'ful', p],
      ['ousness', 'ous', p],
      ['aliti', 'al', p],
      ['iviti', 'ive', p],
      ['biliti', 'ble', p],
    ];
    if (this.mode === 'NLTK_EXTENSIONS') {
      rules.push(['fulli', 'ful', p]);
      // NLTK tests the measure of the word less "ogi" (that is, the stem plus its "l").
      rules.push(['logi', 'log', () => this.positive(word.slice(0, word.length - 3))]);
    }
    if (this.mode === 'MARTIN_EXTENSIONS') rules.push(['logi', 'log', p]);
    return this.applyRules(word, rules);
  }

  private step3(word: Word): Word {
    const p = this.positive;
    return this.applyRules(word, [
      ['icate', 'ic', p],
      ['ative', '', p],
      ['alize', 'al', p],
      ['iciti', 'ic', p],
      ['ical', 'ic', p],
      ['ful', '', p],
      ['ness', '', p],
    ]);
  }

  private step4(word: Word): Word {
    const gt1 = (stem: Word): boolean => this.measure(stem) > 1;
    return this.applyRules(word, [
      ['al', '', gt1],
      ['ance', '', gt1],
      ['ence', '', gt1],
      ['er', '', gt1],
      ['ic', '', gt1],
      ['able', '', gt1],
      ['ible', '', gt1],
      ['ant', '', gt1],
      ['ement', '', gt1],
      ['ment', '', gt1],
      ['ent', '', gt1],
      ['ion', '', (stem) => this.measure(stem) > 1 && (stem[stem.length - 1] === 's' || stem[stem.length - 1] === 't')],
      ['ou', '', gt1],
      ['ism', '', gt1],
      ['ate', '', gt1],
      ['iti', '', gt1],
      ['ous', '', gt1],
      ['ive', '', gt1],
      ['ize', '', gt1],
    ]);
  }

  private step5a(word: Word): Word {
    if (endsWith(word, 'e')) {
      const stem = cut(word, 'e');
      const m = this.measure(stem);
      if (m > 1) return stem;
      if (m === 1 && !this.endsCvc(stem)) return stem;
    }
    return word;
  }

  private step5b(word: Word): Word {
    return this.applyRules(word, [['ll', 'l', () => this.measure(word.slice(0, word.length - 1)) > 1]]);
  }
}

let shared: PorterStemmer | undefined;

/** The one NLTK-default (NLTK_EXTENSIONS) stemmer that ROUGE and METEOR share. */
export function defaultStemmer(): PorterStemmer {
  shared ??= new PorterStemmer();
  return shared;
}
