/**
 * METEOR as NLTK's `nltk.translate.meteor_score` computes it (NLTK >= 3.6.6 semantics).
 *
 * Words are lowercased (NLTK's default `preprocess=str.lower`), then aligned in three stages, each
 * over the words the previous stages left unmatched, each a greedy scan from the *last* hypothesis
 * word and the *last* reference word backwards (NLTK's `_match_enums`):
 *   1. exact match;
 *   2. Porter stems (NLTK_EXTENSIONS mode) — the words left over are carried on *as stems*, as NLTK does;
 *   3. WordNet synonyms: a reference word matches a hypothesis word when it is one of the lemma names
 *      (without '_') of the hypothesis word's synsets (found through morphy), or the word itself.
 * Then P = m/|hyp|, R = m/|ref|, Fmean = P·R / (α·P + (1−α)·R), penalty = γ·(chunks/m)^β and
 * score = (1 − penalty)·Fmean with α = 0.9, β = 3, γ = 0.5 by default; 0 when nothing matches or a
 * side is empty. With several references the best score wins.
 *
 * NLTK takes pre-tokenized input; strings given here are split by NLTK's word tokenizer
 * (`word_tokenize(text, preserve_line=True)`), or on whitespace with `tokenize: 'whitespace'` (how
 * NLTK's own `meteor_score` split strings before 3.6.6). Arrays are used as given.
 */
import { EvalError } from './errors.js';
import { defaultStemmer, type PorterStemmer } from './porter.js';
import { pyLower, pySplit } from './pytext.js';
import { treebankTokenize } from './treebank.js';
import { loadWordNet, type WordNet } from './wordnet.js';

export interface MeteorOptions {
  /** Weight of precision against recall. Default 0.9. */
  alpha?: number;
  /** Shape of the fragmentation penalty. Default 3. */
  beta?: number;
  /** Weight of the fragmentation penalty. Default 0.5. */
  gamma?: number;
  /** Run the WordNet synonym stage (needs WordNet data). Default true, as NLTK. */
  synonyms?: boolean;
  /** A WordNet reader, or the directory to load one from (default: the search path). */
  wordnet?: WordNet | string;
  /** The stemmer of stage 2. Default: NLTK's default Porter stemmer. */
  stemmer?: PorterStemmer;
  /** Per-word preprocessing. Default: Python's `str.lower`. */
  preprocess?: (word: string) => string;
  /**
   * How strings are split into words (arrays are used as given): 'treebank' (default;
   * `nltk.word_tokenize(text, preserve_line=True)`, which is what Hugging Face `evaluate`'s METEOR
   * does, less its Punkt sentence splitting) or 'whitespace' (Python's `str.split()`, what NLTK's
   * `meteor_score` itself did with strings before 3.6.6).
   */
  tokenize?: MeteorTokenizer;
}

export type MeteorTokenizer = 'whitespace' | 'treebank';

/** A word with its position in the sentence, as NLTK's enumerated lists. */
type Enum = Array<[number, string]>;
type Match = [number, number];

function tokens(x: string | readonly string[], how: MeteorTokenizer = 'treebank'): string[] {
  if (typeof x !== 'string') return x.slice();
  if (how === 'whitespace') return pySplit(x);
  if (how === 'treebank') return treebankTokenize(x);
  throw new EvalError('E_EVAL_ARGS', `METEOR: unknown tokenizer '${String(how)}' (expected whitespace or treebank)`);
}

/** NLTK's `_match_enums`: greedy exact matching from the end of both lists; mutates the lists. */
function matchEnums(hyp: Enum, ref: Enum): Match[] {
  const out: Match[] = [];
  for (let i = hyp.length - 1; i >= 0; i--) {
    for (let j = ref.length - 1; j >= 0; j--) {
      if (hyp[i][1] === ref[j][1]) {
        out.push([hyp[i][0], ref[j][0]]);
        hyp.splice(i, 1);
        ref.splice(j, 1);
        break;
      }
    }
  }
  return out;
}

function wordnetMatch(hyp: Enum, ref: Enum, wn: WordNet): Match[] {
  const out: Match[] = [];
  for (let i = hyp.length - 1; i >= 0; i--) {
    const syns = wn.synonyms(hyp[i][1]);
    for (let j = ref.length - 1; j >= 0; j--) {
      if (syns.has(ref[j][1])) {
        out.push([hyp[i][0], ref[j][0]]);
        hyp.splice(i, 1);
        ref.splice(j, 1);
        break;
      }
    }
  }
  return out;
}

/** The alignment NLTK's `align_words` finds, sorted by hypothesis position. */
export function meteorAlign(
  hypothesis: readonly string[],
  reference: readonly string[],
  stemmer: PorterStemmer,
  wordnet: WordNet | null,
  preprocess: (w: string) => string = pyLower,
): Array<[number, number]> {
  let hyp: Enum = hypothesis.map((w, i) => [i, preprocess(w)]);
  let ref: Enum = reference.map((w, i) => [i, preprocess(w)]);
  const exact = matchEnums(hyp, ref);
  hyp = hyp.map(([i, w]) => [i, stemmer.stem(w)]);
  ref = ref.map(([i, w]) => [i, stemmer.stem(w)]);
  const stem = matchEnums(hyp, ref);
  const syn = wordnet ? wordnetMatch(hyp, ref, wordnet) : [];
  return [...exact, ...stem, ...syn].sort((a, b) => a[0] - b[0]);
}

/** NLTK's `_count_chunks`: runs of matches adjacent in both sentences. */
export function countChunks(matches: ReadonlyArray<readonly [number, number]>): number {
  let chunks = 1;
  for (let i = 0; i < matches.length - 1; i++) {
    const adjacent = matches[i + 1][0] === matches[i][0] + 1 && matches[i + 1][1] === matches[i][1] + 1;
    if (!adjacent) chunks++;
  }
  return chunks;
}

function resolveWordNet(options: MeteorOptions): WordNet | null {
  if (options.synonyms === false) return null;
  if (options.wordnet && typeof options.wordnet !== 'string') return options.wordnet;
  return loadWordNet(typeof options.wordnet === 'string' ? options.wordnet : undefined);
}

function singleWith(
  reference: readonly string[],
  hypothesis: readonly string[],
  options: MeteorOptions,
  wordnet: WordNet | null,
): number {
  const alpha = options.alpha ?? 0.9;
  const beta = options.beta ?? 3;
  const gamma = options.gamma ?? 0.5;
  const stemmer = options.stemmer ?? defaultStemmer();
  const translationLength = hypothesis.length;
  const referenceLength = reference.length;
  const matches = meteorAlign(hypothesis, reference, stemmer, wordnet, options.preprocess ?? pyLower);
  const m = matches.length;
  // NLTK returns 0 on any ZeroDivisionError: an empty side or no match at all.
  if (translationLength === 0 || referenceLength === 0 || m === 0) return 0;
  const precision = m / translationLength;
  const recall = m / referenceLength;
  const denom = alpha * precision + (1 - alpha) * recall;
  if (denom === 0) return 0;
  const fmean = (precision * recall) / denom;
  const fragFrac = countChunks(matches) / m;
  const penalty = gamma * fragFrac ** beta;
  return (1 - penalty) * fmean;
}

/** `single_meteor_score(reference, hypothesis)`; strings are split on whitespace. */
export function singleMeteorScore(
  reference: string | readonly string[],
  hypothesis: string | readonly string[],
  options: MeteorOptions = {},
): number {
  return singleWith(tokens(reference, options.tokenize), tokens(hypothesis, options.tokenize), options, resolveWordNet(options));
}

/** `meteor_score(references, hypothesis)`: the best score over the references. */
export function meteorScore(
  references: ReadonlyArray<string | readonly string[]>,
  hypothesis: string | readonly string[],
  options: MeteorOptions = {},
): number {
  if (references.length === 0) throw new EvalError('E_EVAL_ARGS', 'METEOR: at least one reference is needed');
  const wn = resolveWordNet(options);
  const hyp = tokens(hypothesis, options.tokenize);
  let best = -Infinity;
  for (const r of references) best = Math.max(best, singleWith(tokens(r, options.tokenize), hyp, options, wn));
  return best;
}
