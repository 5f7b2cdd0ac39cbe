// `lora eval --model … --data …`: generation-based evaluation on the held-out records (the part of
// --data that training with the same --split and --seed did not use), scored with BLEU/ROUGE/METEOR,
// optionally judged by an LLM; writes OUT/traces.jsonl and OUT/summary.json.
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import {
  chatCompletionsUrl,
  evaluateModel,
  generationErrorNote,
  heldOutRecords,
  loadWordNet,
  METRIC_NAMES,
  OptForCausalLM,
  OptTokenizer,
  readEvalRecords,
  writeEvalOutputs,
  type BaseDType,
  type DeviceOption,
  type EvalResult,
  type JudgeOptions,
  type MetricName,
} from '@lora/sdk';

import { UsageError } from '../command.js';

export const RUN_USAGE = [
  'lora eval --model DIR|ID [--adapter DIR] --data FILE [--split 0.5] [--seed 42] [--limit N] [--max-new-tokens 64]',
  '          [--metrics bleu,rouge,meteor] [--out DIR] [--json] [--name NAME]',
  '          [--temperature 0] [--top-p 1] [--top-k 0] [--dtype f32|bf16|...] [--device auto|cpu|cuda]',
  '          [--stemmer] [--no-synonyms] [--wordnet DIR] [--replace-invalid-utf8]',
  '          [--judge-url URL --judge-model NAME] [--judge-concurrency 4] [--judge-retries 3] [--judge-timeout 60]',
  '',
  'Generates for each held-out record (prompt from the training template), scores the output against',
  "the record's output and writes OUT/traces.jsonl (one LangSmith-style run per example) and",
  'OUT/summary.json (mean metrics, P50/P95 latency, token totals, config).',
  '  --split F               train fraction used in training; the held-out rest is evaluated (0: every record)',
  '  --seed N                the split seed (same as training; default 42); sampling uses seed + example index',
  '  --limit N               evaluate the first N held-out records',
  '  --out DIR               default eval/results/run-<time>',
  '  --judge-url URL         OpenAI-compatible endpoint (http://host:port, …/v1 or …/v1/chat/completions);',
  '                          key from $LORA_JUDGE_API_KEY; rubrics: correctness, helpfulness (0..1)',
].join('\n');

function parseMetrics(spec: string): MetricName[] {
  const names = spec.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s.length > 0);
  if (names.length === 0) throw new UsageError('--metrics needs at least one of bleu, rouge, meteor');
  for (const n of names) {
    if (!(METRIC_NAMES as readonly string[]).includes(n)) throw new UsageError(`unknown metric '${n}' in --metrics (expected ${METRIC_NAMES.join(', ')})`);
  }
  return [...new Set(names)] as MetricName[];
}

function number(s: string | undefined, name: string, o: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (s === undefined) return undefined;
  const v = Number(s);
  if (s.trim() === '' || !Number.isFinite(v) || (o.integer && !Number.isInteger(v))) throw new UsageError(`--${name} must be ${o.integer ? 'an integer' : 'a number'}, got '${s}'`);
  if (o.min !== undefined && v < o.min) throw new UsageError(`--${name} must be >= ${o.min}, got ${v}`);
  if (o.max !== undefined && v > o.max) throw new UsageError(`--${name} must be <= ${o.max}, got ${v}`);
  return v;
}

function f(x: number | undefined, d: number): string {
  return x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d);
}

/** The human-readable summary of a `lora eval` run. */
export function formatEvalSummary(r: EvalResult, paths: { traces: string; summary: string }): string {
  const s = r.summary;
  const m = s.metrics;
  const out = [
    `lora eval: ${s.count} example${s.count === 1 ? '' : 's'}${s.errors ? `, ${s.errors} failed to generate (scored 0, see traces)` : ''}` +
      `${s.emptyOutputs ? `, ${s.emptyOutputs} empty output${s.emptyOutputs === 1 ? '' : 's'}` : ''}` +
      `${s.emptyReferences ? `, ${s.emptyReferences} empty reference${s.emptyReferences === 1 ? '' : 's'}` : ''}`,
    '',
  ];
  const rows: Array<[string, string]> = [];
  if (m.bleu !== undefined) rows.push(['BLEU (corpus)', f(m.bleu, 2)]);
  for (const [k, name] of [['rouge1', 'ROUGE-1 F'], ['rouge2', 'ROUGE-2 F'], ['rougeL', 'ROUGE-L F'], ['rougeLsum', 'ROUGE-Lsum F'], ['meteor', 'METEOR']] as const) {
    if (m[k] !== undefined) rows.push([name, f(m[k], 4)]);
  }
  if (s.judge) {
    for (const rb of s.judge.rubrics) rows.push([`judge ${rb}`, m[`judge_${rb}`] !== undefined ? f(m[`judge_${rb}`], 3) : 'n/a']);
  }
  const lt = s.latency;
  rows.push(
    ['time to first token', `P50 ${f(lt.timeToFirstTokenMs.p50, 1)} ms  P95 ${f(lt.timeToFirstTokenMs.p95, 1)} ms  mean ${f(lt.timeToFirstTokenMs.mean, 1)} ms`],
    ['generation latency', `P50 ${f(lt.totalMs.p50, 1)} ms  P95 ${f(lt.totalMs.p95, 1)} ms  mean ${f(lt.totalMs.mean, 1)} ms`],
    ['tokens', `${s.tokens.in} in, ${s.tokens.out} out, ${s.tokens.total} total (${f(s.outputTokensPerSec, 1)} generated tokens/s)`],
  );
  const w = Math.max(...rows.map(([a]) => a.length));
  out.push(...rows.map(([a, b]) => `${a.padEnd(w)}  ${b}`));
  if (s.judge && s.judge.errors) {
    out.push('', `judge: ${s.judge.errors} verdict${s.judge.errors === 1 ? '' : 's'} without a score (each recorded with its error in traces.jsonl)`);
    const firstErrors = new Set<string>();
    for (const e of r.examples) for (const v of Object.values(e.judge ?? {})) if (v?.error && firstErrors.size < 3) firstErrors.add(v.error);
    for (const msg of firstErrors) out.push(`  e.g. ${msg}`);
  }
  out.push('', `Wrote ${paths.traces} and ${paths.summary}`);
  return out.join('\n');
}

export async function runEval(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      model: { type: 'string' }, adapter: { type: 'string' }, data: { type: 'string' }, split: { type: 'string' },
      seed: { type: 'string' }, limit: { type: 'string' }, 'max-new-tokens': { type: 'string' }, metrics: { type: 'string' },
      out: { type: 'string' }, json: { type: 'boolean', default: false }, name: { type: 'string' },
      temperature: { type: 'string' }, 'top-p': { type: 'string' }, 'top-k': { type: 'string' },
      dtype: { type: 'string' }, device: { type: 'string' },
      stemmer: { type: 'boolean', default: false }, 'no-synonyms': { type: 'boolean', default: false }, wordnet: { type: 'string' },
      'replace-invalid-utf8': { type: 'boolean', default: false },
      'judge-url': { type: 'string' }, 'judge-model': { type: 'string' }, 'judge-concurrency': { type: 'string' },
      'judge-retries': { type: 'string' }, 'judge-timeout': { type: 'string' },
    },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' (subcommands: score, compare)`);
  if (!values.model) throw new UsageError('--model DIR|ID is required');
  if (!values.data) throw new UsageError('--data FILE is required');
  const split = number(values.split, 'split', { min: 0, max: 1 }) ?? 0.5;
  if (split === 1) throw new UsageError('--split 1 trains on every record and leaves none held out to evaluate (use the split training used, e.g. 0.5, or 0 to evaluate every record)');
  const seed = number(values.seed, 'seed', { integer: true }) ?? 42;
  const limit = number(values.limit, 'limit', { integer: true, min: 1 });
  const maxNewTokens = number(values['max-new-tokens'], 'max-new-tokens', { integer: true, min: 1 }) ?? 64;
  const metrics = values.metrics !== undefined ? parseMetrics(values.metrics) : [...METRIC_NAMES];
  const judgeUrl = values['judge-url'];
  if ((judgeUrl === undefined) !== (values['judge-model'] === undefined)) throw new UsageError('--judge-url and --judge-model go together');
  const device = (values.device ?? 'auto') as DeviceOption;
  if (!['auto', 'cpu', 'cuda', 'ref', 'emu'].includes(device)) throw new UsageError(`--device must be auto, cpu or cuda, got '${device}'`);
  const dtype = (values.dtype ?? 'f32') as BaseDType;
  if (!['f32', 'bf16', 'f16', 'int8', 'int4', 'nf4'].includes(dtype)) throw new UsageError('--dtype must be one of f32, bf16, f16, int8, int4, nf4');
  const judge: JudgeOptions | undefined = judgeUrl
    ? {
        url: judgeUrl,
        model: values['judge-model']!,
        apiKey: process.env.LORA_JUDGE_API_KEY || undefined,
        concurrency: number(values['judge-concurrency'], 'judge-concurrency', { integer: true, min: 1 }) ?? 4,
        retries: number(values['judge-retries'], 'judge-retries', { integer: true, min: 0 }) ?? 3,
        timeoutMs: (number(values['judge-timeout'], 'judge-timeout', { min: 0.001 }) ?? 60) * 1000,
      }
    : undefined;
  // Missing WordNet (METEOR's synonyms) and a bad --judge-url are reported before any generation runs.
  if (metrics.includes('meteor') && !values['no-synonyms']) loadWordNet(values.wordnet);
  if (judge) chatCompletionsUrl(judge.url);
  const out = resolve(values.out ?? join('eval', 'results', `run-${new Date().toISOString().replace(/[:.]/g, '-')}`));

  const { records, warnings } = await readEvalRecords(values.data, { invalidUtf8: values['replace-invalid-utf8'] ? 'replace' : 'error' });
  for (const w of warnings) process.stderr.write(`lora eval: warning: ${w}\n`);
  if (!records.length) {
    process.stderr.write(`lora eval: ${values.data} holds no records\n`);
    return 1;
  }
  const held = heldOutRecords(records, split, seed, limit);
  if (!held.length) {
    process.stderr.write(`lora eval: --split ${split} of ${records.length} record${records.length === 1 ? '' : 's'} leaves none held out to evaluate\n`);
    return 1;
  }

  const tok = await OptTokenizer.fromPretrained(values.model);
  const model = await OptForCausalLM.fromPretrained(values.model, { device, dtype });
  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  try {
    if (values.adapter) await model.loadAdapter(values.adapter);
    process.stderr.write(`lora eval: ${held.length} held-out record${held.length === 1 ? '' : 's'} of ${records.length} (split ${split}, seed ${seed})\n`);
    const plain = !process.stderr.isTTY;
    const result = await evaluateModel(
      model,
      tok,
      held,
      {
        maxNewTokens, seed, metrics,
        temperature: number(values.temperature, 'temperature', { min: 0 }) ?? 0,
        topP: number(values['top-p'], 'top-p', { min: 0, max: 1 }) ?? 1,
        topK: number(values['top-k'], 'top-k', { integer: true, min: 0 }) ?? 0,
        score: {
          rougeStemmer: values.stemmer,
          meteor: { synonyms: !values['no-synonyms'], ...(values.wordnet ? { wordnet: values.wordnet } : {}) },
        },
        ...(judge ? { judge } : {}),
        name: values.name ?? 'lora-eval',
        config: {
          model: values.model, adapter: values.adapter ?? null, data: values.data, split, seed, limit: limit ?? null,
          heldOut: held.length, records: records.length, dtype, device: model.device.backend,
          ...(judge ? { judge: { url: judge.url, model: judge.model, concurrency: judge.concurrency, retries: judge.retries, timeoutMs: judge.timeoutMs } } : {}),
        },
        signal: ac.signal,
      },
      (p) => {
        if (p.type === 'generated') {
          const e = p.example;
          const step = Math.max(1, Math.floor(p.total / 10));
          if (!plain || p.index + 1 === p.total || (p.index + 1) % step === 0 || e.error) {
            const what = e.error ? `error: ${e.error}` : `${e.tokensOut} tokens, ${f(e.totalMs, 0)} ms`;
            process.stderr.write(`${plain ? '' : '\r\x1b[2K'}generate ${p.index + 1}/${p.total}  ${what}${plain || e.error ? '\n' : ''}`);
          }
          if (!plain && p.index + 1 === p.total) process.stderr.write('\n');
        } else if (p.done === p.total || !plain) {
          process.stderr.write(`${plain ? '' : '\r\x1b[2K'}judge ${p.done}/${p.total}${plain || p.done === p.total ? '\n' : ''}`);
        }
      },
    );
    const paths = await writeEvalOutputs(result, out);
    if (values.json) process.stdout.write(`${JSON.stringify({ summary: result.summary, traces: paths.traces }, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
    else process.stdout.write(`${formatEvalSummary(result, paths)}\n`);
    const failed = generationErrorNote(result);
    if (failed && result.summary.errors === result.summary.count) {
      process.stderr.write(`lora eval: every generation failed: ${failed}; nothing was really scored [E_EVAL_GENERATE]\n`);
      return 1;
    }
    if (failed) process.stderr.write(`lora eval: warning: ${failed}\n`);
    if (result.summary.judge?.unreachable !== undefined) {
      process.stderr.write(`lora eval: the judge at ${judge!.url} could not be reached (${result.summary.judge.unreachable}); ` +
        `generation scores were written, judge scores are missing for every example [E_JUDGE_UNREACHABLE]\n`);
      return 1;
    }
    if (result.summary.judge && result.summary.judge.judged === 0 && result.summary.count > 0) {
      const first = result.examples.flatMap((e) => Object.values(e.judge ?? {})).find((v) => v?.error)?.error ?? 'no verdicts';
      process.stderr.write(`lora eval: the judge gave no usable verdict for any example (first error: ${first}); ` +
        `generation scores were written, judge errors are recorded per example in traces.jsonl [E_JUDGE_RESPONSE]\n`);
      return 1;
    }
    return 0;
  } catch (e) {
    if (ac.signal.aborted) {
      process.stderr.write('lora eval: interrupted; nothing written\n');
      return 130;
    }
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
    model.dispose();
  }
}
