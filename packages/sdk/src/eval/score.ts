/**
 * Scoring of prediction/reference pairs with every metric at once, as `lora eval score` and
 * `lora eval` report them: corpus BLEU (sacreBLEU's `corpus_bleu`) over all examples, and per example
 * sentence BLEU (sacreBLEU's `sentence_bleu` defaults), ROUGE-1/2/L/Lsum precision/recall/F
 * (rouge-score, best reference by F) and METEOR (NLTK, best reference), with their means.
 *
 * No example is ever dropped. An empty (or whitespace-only) prediction scores 0 on every metric; an
 * example whose references are all empty scores 0 too, and in corpus BLEU counts as a hypothesis
 * against a reference with no tokens (sacreBLEU itself would reject the whole corpus). Each such
 * example carries a note saying so.
 */
import { bleuFromStatistics, bleuSegmentStatistics, sentenceBleu, type BleuOptions, type BleuScore } from './bleu.js';
import { EvalError } from './errors.js';
import { meteorScore, type MeteorOptions } from './meteor.js';
import { pyStrip } from './pytext.js';
import { rougeScoreMulti, DEFAULT_ROUGE_TYPES, type RougeTriple } from './rouge.js';
import { loadWordNet, type WordNet } from './wordnet.js';

export type MetricName = 'bleu' | 'rouge' | 'meteor';
export const METRIC_NAMES: readonly MetricName[] = ['bleu', 'rouge', 'meteor'];

export interface ScoreExample {
  prediction: string;
  /** One or more references. */
  references: readonly string[];
}

export interface ScoreOptions {
  /** Default: all of bleu, rouge, meteor. */
  metrics?: readonly MetricName[];
  /** ROUGE's Porter stemming of tokens longer than 3 characters. Default false (rouge-score's default). */
  rougeStemmer?: boolean;
  /** Corpus BLEU options (sacreBLEU defaults: 13a, 'exp'); sentence BLEU uses them with effective order on. */
  bleu?: BleuOptions;
  /** METEOR options; `synonyms: false` runs exact + stem matching only (no WordNet needed). */
  meteor?: MeteorOptions;
}

/** Precision, recall and F of one ROUGE type, in the short form the JSON output uses. */
export interface PRF {
  p: number;
  r: number;
  f: number;
}

export interface ExampleScores {
  /** 0-based position in the input. */
  index: number;
  /** sacreBLEU sentence BLEU, 0..100. */
  sentenceBleu?: number;
  rouge?: Record<string, PRF>;
  /** NLTK METEOR, 0..1. */
  meteor?: number;
  /** Why an example was scored the way it was (empty prediction, empty references). */
  notes?: string[];
}

export interface CorpusScores {
  count: number;
  bleu?: BleuScore & { signature: string };
  /** Mean precision/recall/F over examples for each ROUGE type. */
  rouge?: Record<string, PRF>;
  /** Mean METEOR over examples. */
  meteor?: number;
  emptyPredictions: number;
  emptyReferences: number;
}

export interface ScoreReport {
  corpus: CorpusScores;
  examples: ExampleScores[];
}

function prf(t: RougeTriple): PRF {
  return { p: t.precision, r: t.recall, f: t.fmeasure };
}

function isBlank(s: string): boolean {
  return pyStrip(s).length === 0;
}

function bleuSignature(nrefs: Set<number>, o: BleuOptions): string {
  const smooth = o.smoothMethod ?? 'exp';
  const defaults: Record<string, number> = { floor: 0.1, 'add-k': 1 };
  const value = Object.hasOwn(defaults, smooth) ? `[${(o.smoothValue ?? defaults[smooth]).toFixed(2)}]` : '';
  const n = nrefs.size === 1 ? String([...nrefs][0]) : 'var';
  return `nrefs:${n}|case:${o.lowercase ? 'lc' : 'mixed'}|eff:${o.effectiveOrder ? 'yes' : 'no'}|tok:${o.tokenize ?? '13a'}|smooth:${smooth}${value}`;
}

/** Scores every example with the chosen metrics; see the module comment for empty inputs. */
export function scorePredictions(examples: readonly ScoreExample[], options: ScoreOptions = {}): ScoreReport {
  const metrics = new Set(options.metrics ?? METRIC_NAMES);
  for (const m of metrics) {
    if (!METRIC_NAMES.includes(m)) throw new EvalError('E_EVAL_ARGS', `unknown metric '${String(m)}' (expected ${METRIC_NAMES.join(', ')})`);
  }
  const bleuOpts = options.bleu ?? {};
  let wordnet: WordNet | null = null;
  if (metrics.has('meteor') && options.meteor?.synonyms !== false) {
    const given = options.meteor?.wordnet;
    wordnet = given && typeof given !== 'string' ? given : loadWordNet(typeof given === 'string' ? given : undefined);
  }
  const meteorOpts: MeteorOptions = { ...options.meteor, ...(wordnet ? { wordnet } : { synonyms: false }) };

  const out: ExampleScores[] = [];
  const stats: number[][] = [];
  const nrefs = new Set<number>();
  let emptyPredictions = 0;
  let emptyReferences = 0;
  const rougeSums: Record<string, PRF> = {};
  for (const t of DEFAULT_ROUGE_TYPES) rougeSums[t] = { p: 0, r: 0, f: 0 };
  let meteorSum = 0;

  examples.forEach((ex, index) => {
    if (typeof ex.prediction !== 'string') throw new EvalError('E_EVAL_ARGS', `example ${index}: prediction is not a string`);
    if (!Array.isArray(ex.references) || ex.references.some((r) => typeof r !== 'string')) {
      throw new EvalError('E_EVAL_ARGS', `example ${index}: references must be a list of strings`);
    }
    const notes: string[] = [];
    const refs = ex.references.filter((r) => !isBlank(r));
    const emptyPred = isBlank(ex.prediction);
    const emptyRefs = refs.length === 0;
    if (emptyPred) {
      emptyPredictions++;
      notes.push('empty prediction: scored 0');
    }
    if (emptyRefs) {
      emptyReferences++;
      notes.push('empty reference: scored 0; in corpus BLEU it counts as a reference with no tokens');
    } else if (refs.length < ex.references.length) {
      notes.push(`${ex.references.length - refs.length} empty reference(s) ignored`);
    }
    const zero = emptyPred || emptyRefs;
    const row: ExampleScores = { index };

    if (metrics.has('bleu')) {
      // sacreBLEU drops only '' references; whitespace-only ones tokenise to nothing, same effect on n-grams
      // but not on the closest length, so keep exactly sacreBLEU's rule here.
      const bleuRefs = ex.references.filter((r) => r !== '');
      nrefs.add(bleuRefs.length);
      stats.push(bleuSegmentStatistics(ex.prediction, bleuRefs, bleuOpts));
      row.sentenceBleu = zero ? 0 : sentenceBleu(ex.prediction, bleuRefs, { ...bleuOpts, effectiveOrder: bleuOpts.effectiveOrder ?? true }).score;
    }
    if (metrics.has('rouge')) {
      const r: Record<string, PRF> = {};
      if (zero) for (const t of DEFAULT_ROUGE_TYPES) r[t] = { p: 0, r: 0, f: 0 };
      else {
        const s = rougeScoreMulti(refs, ex.prediction, { useStemmer: options.rougeStemmer ?? false });
        for (const t of DEFAULT_ROUGE_TYPES) r[t] = prf(s[t]);
      }
      for (const t of DEFAULT_ROUGE_TYPES) {
        rougeSums[t].p += r[t].p;
        rougeSums[t].r += r[t].r;
        rougeSums[t].f += r[t].f;
      }
      row.rouge = r;
    }
    if (metrics.has('meteor')) {
      row.meteor = zero ? 0 : meteorScore(refs, ex.prediction, meteorOpts);
      meteorSum += row.meteor;
    }
    if (notes.length > 0) row.notes = notes;
    out.push(row);
  });

  const n = examples.length;
  const corpus: CorpusScores = { count: n, emptyPredictions, emptyReferences };
  if (metrics.has('bleu')) {
    corpus.bleu = { ...bleuFromStatistics(stats, bleuOpts, false), signature: bleuSignature(nrefs, bleuOpts) };
  }
  if (metrics.has('rouge')) {
    const mean: Record<string, PRF> = {};
    for (const t of DEFAULT_ROUGE_TYPES) {
      const s = rougeSums[t];
      mean[t] = n ? { p: s.p / n, r: s.r / n, f: s.f / n } : { p: 0, r: 0, f: 0 };
    }
    corpus.rouge = mean;
  }
  if (metrics.has('meteor')) corpus.meteor = n ? meteorSum / n : 0;
  return { corpus, examples: out };
}
