// `lora eval <subcommand>`: evaluation of generated text. `lora eval score` scores existing
// predictions against references, as the sacreBLEU command line does, with no model involved.
import { readFileSync } from 'node:fs';

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

import type { Command, Subcommand } from '../command.js';
import { UsageError } from '../command.js';
import { closest, parseFlags, type CommandSpec } from '../flags.js';
import { jsonFlag } from './common-flags.js';
import { COMPARE_SPEC, runCompare } from './eval-compare.js';
import { RUN_SPEC, runEval } from './eval-run.js';

const TOKENIZERS: readonly BleuTokenizer[] = ['13a', 'intl', 'char', 'none'];
const SMOOTHING: readonly BleuSmoothMethod[] = ['exp', 'floor', 'add-k', 'none'];

const SCORE_SPEC: CommandSpec = {
  command: 'lora eval score',
  synopsis: 'lora eval score --input FILE.jsonl [options]',
  description: 'Each line of FILE is a JSON object with "prediction" and "reference" (a string) or "references" (a list).\n' +
    'Prints corpus BLEU (sacreBLEU), mean ROUGE-1/2/L/Lsum F (rouge-score) and mean METEOR (NLTK); no model is involved.\n' +
    '--json prints {corpus, examples} with per-example sentence BLEU, ROUGE P/R/F and METEOR.',
  flags: [
    { name: 'input', kind: 'string', metavar: 'FILE.jsonl', help: 'predictions and references' },
    { name: 'metrics', kind: 'list', itemName: 'metric', choices: METRIC_NAMES, default: [...METRIC_NAMES], help: 'which metrics' },
    { name: 'stemmer', kind: 'boolean', help: 'Porter-stem ROUGE tokens (rouge-score use_stemmer=True)' },
    { name: 'tokenize', kind: 'enum', choices: TOKENIZERS, default: '13a', help: 'BLEU tokenizer (sacreBLEU --tokenize)' },
    { name: 'smooth', kind: 'enum', choices: SMOOTHING, default: 'exp', help: 'BLEU smoothing (sacreBLEU --smooth-method)' },
    { name: 'smooth-value', kind: 'number', min: 0, help: 'the smoothing\'s value (floor: 0.1, add-k: 1 by default)' },
    { name: 'lowercase', kind: 'boolean', help: 'case-insensitive BLEU' },
    { name: 'no-synonyms', kind: 'boolean', help: 'METEOR without the WordNet synonym stage (no WordNet needed)' },
    { name: 'wordnet', kind: 'string', metavar: 'DIR', defaultText: '$LORA_WORDNET_DIR, /usr/share/wordnet', help: 'WordNet 3.0 dict directory' },
    { name: 'meteor-tokenize', kind: 'enum', choices: ['treebank', 'whitespace'], default: 'treebank', help: 'METEOR words: NLTK word_tokenize or str.split' },
    { name: 'replace-invalid-utf8', kind: 'boolean', help: 'replace bytes that are not UTF-8 with U+FFFD and warn (default: error)' },
    jsonFlag('print corpus and per-example scores as JSON'),
  ],
};

const EVAL_SUBCOMMANDS: Subcommand[] = [
  { name: 'score', summary: 'score existing predictions (BLEU, ROUGE, METEOR)', spec: SCORE_SPEC },
  { name: 'compare', summary: 'one table across eval, bench and train outputs', spec: COMPARE_SPEC },
];

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
  const { values: v } = parseFlags(SCORE_SPEC, argv);
  const values = v as {
    input?: string; metrics: MetricName[]; stemmer?: boolean; json?: boolean; tokenize: BleuTokenizer; smooth: BleuSmoothMethod;
    'smooth-value'?: number; lowercase?: boolean; 'no-synonyms'?: boolean; wordnet?: string; 'meteor-tokenize': 'treebank' | 'whitespace';
    'replace-invalid-utf8'?: boolean;
  };
  if (!values.input) throw new UsageError('--input FILE.jsonl is required');
  const metrics = [...new Set(values.metrics)];
  const tokenize = values.tokenize;
  const smooth = values.smooth;
  const meteorTokenize = values['meteor-tokenize'];
  const smoothValue = values['smooth-value'];

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
      rougeStemmer: values.stemmer === true,
      bleu: { tokenize, smoothMethod: smooth, smoothValue, lowercase: values.lowercase === true },
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
  spec: RUN_SPEC,
  subcommands: EVAL_SUBCOMMANDS,
  async run(argv) {
    const [sub, ...rest] = argv;
    // `lora eval --model …` (no subcommand) runs the generation-based evaluation.
    if (sub === undefined || sub.startsWith('-')) {
      if (sub === undefined) throw new UsageError('give --model and --data to evaluate, or a subcommand (score, compare)');
      return runEval(argv);
    }
    const run = SUBCOMMANDS[sub];
    if (!run) {
      const near = closest(sub, Object.keys(SUBCOMMANDS));
      throw new UsageError(`unknown subcommand '${sub}' (available: ${Object.keys(SUBCOMMANDS).join(', ')})${near ? `; did you mean '${near}'?` : ''}`);
    }
    return run(rest);
  },
};
