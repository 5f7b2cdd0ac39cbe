/**
 * NLTK's `NLTKWordTokenizer` (the improved Treebank tokenizer behind `nltk.word_tokenize`), as
 * `word_tokenize(text, preserve_line=True)` applies it: to the whole text, without Punkt sentence
 * splitting (Punkt needs a trained model; with it, NLTK would also split a period off every
 * sentence-final word, not only the last one).
 *
 * Python's `\w`, `\b`, `\d`, `\s` and `$` are Unicode-aware / end-or-before-final-newline; the
 * translations below keep those meanings, which JavaScript's shorthands do not have.
 */
import { pySplit } from './pytext.js';

const W = '[\\p{L}\\p{N}_]'; // Python's \w on str
const NOT_W_AFTER = `(?!${W})`; // \b after a word character
const NOT_W_BEFORE = `(?<!${W})`; // \b before a word character
const PY_WS = '[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';

type Sub = [RegExp, string];
const re = (src: string, flags = ''): RegExp => new RegExp(src, `gu${flags}`);

const STARTING_QUOTES: Sub[] = [
  [re('([«“‘„]|[`]+)'), ' $1 '],
  [re('^"'), '``'],
  [re('(``)'), ' $1 '],
  [re('([ (\\[{<])("|\'{2})'), '$1 `` '],
  [re(`(')(?!re|ve|ll|m|t|s|d|n)(${W})${NOT_W_AFTER}`, 'i'), '$1 $2'],
];

const PUNCTUATION: Sub[] = [
  [re(`([^.])(\\.)([\\])}>"'»”’ ]*)${PY_WS}*$`), '$1 $2 $3 '],
  [re('([:,])([^\\p{Nd}])'), ' $1 $2'],
  [re('([:,])(?=\\n?$)'), ' $1 '],
  [re('\\.{2,}'), ' $& '],
  [re('[;@#$%&]'), ' $& '],
  [re(`([^.])(\\.)([\\])}>"']*)${PY_WS}*$`), '$1 $2$3 '],
  [re('[?!]'), ' $& '],
  [re("([^'])' "), "$1 ' "],
  [re('[*]'), ' $& '],
];

const PARENS_BRACKETS: Sub = [re('[\\][(){}<>]'), ' $& '];
const DOUBLE_DASHES: Sub = [re('--'), ' -- '];

const ENDING_QUOTES: Sub[] = [
  [re('([»”’])'), ' $1 '],
  [re("''"), " '' "],
  [re('"'), " '' "],
  [re("([^' ])('[sS]|'[mM]|'[dD]|') "), '$1 $2 '],
  [re("([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), '$1 $2 '],
];

const CONTRACTIONS: RegExp[] = [
  re(`${NOT_W_BEFORE}(can)(not)${NOT_W_AFTER}`, 'i'),
  re(`${NOT_W_BEFORE}(d)('ye)${NOT_W_AFTER}`, 'i'),
  re(`${NOT_W_BEFORE}(gim)(me)${NOT_W_AFTER}`, 'i'),
  re(`${NOT_W_BEFORE}(gon)(na)${NOT_W_AFTER}`, 'i'),
  re(`${NOT_W_BEFORE}(got)(ta)${NOT_W_AFTER}`, 'i'),
  re(`${NOT_W_BEFORE}(lem)(me)${NOT_W_AFTER}`, 'i'),
  re(`${NOT_W_BEFORE}(more)('n)${NOT_W_AFTER}`, 'i'),
  re(`${NOT_W_BEFORE}(wan)(na)(?=${PY_WS})`, 'i'),
  re(` ('t)(is)${NOT_W_AFTER}`, 'i'),
  re(` ('t)(was)${NOT_W_AFTER}`, 'i'),
];

/** `nltk.word_tokenize(text, preserve_line=True)`. */
export function treebankTokenize(text: string): string[] {
  let s = text;
  for (const [r, sub] of STARTING_QUOTES) s = s.replace(r, sub);
  for (const [r, sub] of PUNCTUATION) s = s.replace(r, sub);
  s = s.replace(PARENS_BRACKETS[0], PARENS_BRACKETS[1]);
  s = s.replace(DOUBLE_DASHES[0], DOUBLE_DASHES[1]);
  s = ` ${s} `;
  for (const [r, sub] of ENDING_QUOTES) s = s.replace(r, sub);
  for (const r of CONTRACTIONS) s = s.replace(r, ' $1 $2 ');
  return pySplit(s);
}
