// `lora eval <subcommand>`: evaluation of generated text. `lora eval score` scores existing
// predictions against references, as the sacreBLEU command line does, with no model involved.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import {
  EvalError,
  METRIC_NAMES,
  parseScoreInput,
  scorePredictions,
  type BleuSmoothMethod,
  type BleuTokenizer,
  type MetricName,
  type ScoreReport,
} from '@lora/sdk';

import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { COMPARE_USAGE, runCompare } from './eval-compare.js';
import { RUN_USAGE, runEval } from './eval-run.js';

const SCORE_USAGE = [
  'lora eval score --input FILE.jsonl [--metrics bleu,rouge,meteor] [--stemmer] [--json]',
  '                [--tokenize 13a|intl|char|none] [--smooth exp|floor|add-k|none] [--smooth-value N] [--lowercase]',
  '                [--no-synonyms] [--wordnet DIR] [--meteor-tokenize treebank|whitespace] [--replace-invalid-utf8]',
  '',
  'Each line of FILE is a JSON object with "prediction" and "reference" (a string) or "references" (a list).',
  'Prints corpus BLEU (sacreBLEU), mean ROUGE-1/2/L/Lsum F (rouge-score) and mean METEOR (NLTK);',
  '--json prints {corpus, examples} with per-example sentence BLEU, ROUGE P/R/F and METEOR.',
  '  --stemmer               Porter-stem ROUGE tokens (rouge-score use_stemmer=True)',
  '  --no-synonyms           METEOR without the WordNet synonym stage (no WordNet needed)',
  '  --wordnet DIR           WordNet 3.0 dict directory (default: $LORA_WORDNET_DIR, /usr/share/wordnet)',
  "  --meteor-tokenize T     METEOR words: treebank (default, NLTK word_tokenize) or whitespace (str.split)",
  '  --replace-invalid-utf8  replace bytes that are not UTF-8 with U+FFFD and warn (default: error)',
].join('\n');

const USAGE = [
  'lora eval score --input FILE.jsonl [options]      score existing predictions',
  'lora eval --model DIR --data FILE [options]      generate on held-out records and score them',
  'lora eval compare PATH... [--html FILE]           one table across eval/bench outputs',
  '',
  RUN_USAGE,
  '',
  SCORE_USAGE,
  '',
  COMPARE_USAGE,
].join('\n');

const TOKENIZERS: readonly BleuTokenizer[] = ['13a', 'intl', 'char', 'none'];
const SMOOTHING: readonly BleuSmoothMethod[] = ['exp', 'floor', 'add-k', 'none'];

function parseMetrics(spec: string): MetricName[] {
  const names = spec.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s.length > 0);
  if (names.length === 0) throw new UsageError('--metrics needs at least one of bleu, rouge, meteor');
  for (const n of names) {
    if (!(METRIC_NAMES as readonly string[]).includes(n)) {
      throw new UsageError(`unknown metric '${n}' in --metrics (expected ${METRIC_NAMES.join(', ')})`);
    }
  }
  return [...new Set(names)] as MetricName[];
}

function f2(x: number): string {
  return x.toFixed(2);
}
function f4(x: number): string {
  return x.toFixed(4);
}

/** The human-readable table of `lora eval score`. */
export function formatScoreTable(report: ScoreReport, source: string, lines?: readonly number[]): string {
  const c = report.corpus;
  const rows: Array<[string, string, string]> = [];
  if (c.bleu) {
    const b = c.bleu;
    rows.push([
      'BLEU',
      f2(b.score),
      `${b.precisions.map((p) => p.toFixed(1)).join('/')} (BP = ${b.bp.toFixed(3)} ratio = ${b.ratio.toFixed(3)} hyp_len = ${b.sysLen} ref_len = ${b.refLen}) ${b.signature}`,
    ]);
  }
  if (c.rouge) {
    const names: Record<string, string> = { rouge1: 'ROUGE-1 F', rouge2: 'ROUGE-2 F', rougeL: 'ROUGE-L F', rougeLsum: 'ROUGE-Lsum F' };
    for (const [k, v] of Object.entries(c.rouge)) rows.push([names[k] ?? k, f4(v.f), `P ${f4(v.p)}  R ${f4(v.r)}  (mean over examples)`]);
  }
  if (c.meteor !== undefined) rows.push(['METEOR', f4(c.meteor), '(mean over examples)']);
  const w0 = Math.max(6, ...rows.map((r) => r[0].length));
  const w1 = Math.max(5, ...rows.map((r) => r[1].length));
  const out = [
    `lora eval score: ${c.count} example${c.count === 1 ? '' : 's'} from ${source}`,
    '',
    `${'metric'.padEnd(w0)}  ${'score'.padStart(w1)}  details`,
    ...rows.map(([a, b, d]) => `${a.padEnd(w0)}  ${b.padStart(w1)}  ${d}`),
  ];
  const noted = report.examples.filter((e) => e.notes && e.notes.length > 0);
  if (noted.length > 0) {
    out.push('', `notes (${noted.length} example${noted.length === 1 ? '' : 's'}):`);
    for (const e of noted.slice(0, 20)) {
      const at = lines?.[e.index] !== undefined ? ` (line ${lines[e.index]})` : '';
      out.push(`  example ${e.index}${at}: ${(e.notes ?? []).join('; ')}`);
    }
    if (noted.length > 20) out.push(`  ... and ${noted.length - 20} more (see --json)`);
  }
  return out.join('\n');
}

async function runScore(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      input: { type: 'string' },
      metrics: { type: 'string' },
      stemmer: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      tokenize: { type: 'string' },
      smooth: { type: 'string' },
      'smooth-value': { type: 'string' },
      lowercase: { type: 'boolean', default: false },
      'no-synonyms': { type: 'boolean', default: false },
      wordnet: { type: 'string' },
      'meteor-tokenize': { type: 'string' },
      'replace-invalid-utf8': { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  if (!values.input) throw new UsageError('--input FILE.jsonl is required');
  const metrics = values.metrics !== undefined ? parseMetrics(values.metrics) : [...METRIC_NAMES];
  const tokenize = (values.tokenize ?? '13a') as BleuTokenizer;
  if (!TOKENIZERS.includes(tokenize)) throw new UsageError(`--tokenize must be one of ${TOKENIZERS.join(', ')}`);
  const smooth = (values.smooth ?? 'exp') as BleuSmoothMethod;
  if (!SMOOTHING.includes(smooth)) throw new UsageError(`--smooth must be one of ${SMOOTHING.join(', ')}`);
  const meteorTokenize = values['meteor-tokenize'] ?? 'treebank';
  if (meteorTokenize !== 'treebank' && meteorTokenize !== 'whitespace') throw new UsageError('--meteor-tokenize must be treebank or whitespace');
  let smoothValue: number | undefined;
  if (values['smooth-value'] !== undefined) {
    smoothValue = Number(values['smooth-value']);
    if (!Number.isFinite(smoothValue) || smoothValue < 0) throw new UsageError('--smooth-value must be a non-negative number');
  }

  let data: Buffer;
  try {
    data = readFileSync(values.input);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    process.stderr.write(`lora eval score: cannot read ${values.input}: ${err.code === 'ENOENT' ? 'no such file' : err.message}\n`);
    return 1;
  }
  try {
    const parsed = parseScoreInput(data, {
      source: values.input,
      invalidUtf8: values['replace-invalid-utf8'] ? 'replace' : 'error',
    });
    for (const w of parsed.warnings) process.stderr.write(`lora eval score: warning: ${w}\n`);
    if (parsed.examples.length === 0) {
      process.stderr.write(`lora eval score: ${values.input} holds no examples\n`);
      return 1;
    }
    const report = scorePredictions(parsed.examples, {
      metrics,
      rougeStemmer: values.stemmer,
      bleu: { tokenize, smoothMethod: smooth, smoothValue, lowercase: values.lowercase },
      meteor: {
        synonyms: !values['no-synonyms'],
        tokenize: meteorTokenize,
        ...(values.wordnet ? { wordnet: values.wordnet } : {}),
      },
    });
    if (values.json) {
      const examples = report.examples.map((e, i) => ({ ...e, line: parsed.examples[i].line }));
      process.stdout.write(`${JSON.stringify({ corpus: report.corpus, examples, warnings: parsed.warnings }, null, 2)}\n`);
    } else {
      process.stdout.write(`${formatScoreTable(report, values.input, parsed.examples.map((e) => e.line))}\n`);
    }
    return 0;
  } catch (e) {
    if (e instanceof EvalError) {
      process.stderr.write(`lora eval score: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  score: runScore,
  compare: runCompare,
};

export const evalCommand: Command = {
  name: 'eval',
  summary: 'Evaluate a model/adapter on held-out records, score predictions, compare experiments (BLEU, ROUGE, METEOR, judge)',
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    // `lora eval --model …` (no subcommand) runs the generation-based evaluation.
    if (sub === undefined || sub.startsWith('-')) {
      if (sub === undefined) throw new UsageError('give --model and --data to evaluate, or a subcommand (score, compare)');
      return runEval(argv);
    }
    const run = SUBCOMMANDS[sub];
    if (!run) throw new UsageError(`unknown subcommand '${sub}' (available: ${Object.keys(SUBCOMMANDS).join(', ')})`);
    return run(rest);
  },
};
