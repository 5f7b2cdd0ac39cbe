// `lora eval --model … --data …`: generation-based evaluation on the held-out records (the part of
// --data that training with the same --split and --seed did not use), scored with BLEU/ROUGE/METEOR,
// optionally judged by an LLM; writes OUT/traces.jsonl and OUT/summary.json.
import { join, resolve } from 'node:path';

import {
  AutoModelForCausalLM,
  AutoTokenizer,
  chatCompletionsUrl,
  evaluateModel,
  evaluateTarget,
  generationErrorNote,
  loadWordNet,
  METRIC_NAMES,
  readEvalRecords,
  splitTrainTest,
  TRAINING_DEFAULTS,
  writeEvalOutputs,
  type BaseDType,
  type DeviceOption,
  type EvalResult,
  type JudgeOptions,
  type MetricName,
} from '@lora/sdk';

import { UsageError } from '../command.js';
import { parseFlags, type CommandSpec } from '../flags.js';
import { deviceFlag, dtypeFlag, modelFlag } from './common-flags.js';
import { checkOverlap, EvalSplitError, fileSha256, findTrainingRecord } from './eval-split.js';
import { TARGET_FLAGS, targetFromFlags } from './eval-target.js';

export const RUN_SPEC: CommandSpec = {
  command: 'lora eval',
  synopsis: 'lora eval --model DIR|ID [--adapter DIR] [--data FILE] [options]',
  description: [
    'Generates for each held-out record (prompt from the training template), scores the output against the record\'s',
    'output and writes OUT/traces.jsonl (one LangSmith-style run per example) and OUT/summary.json (mean metrics,',
    'P50/P95 latency, token totals, config).',
    '',
    'Honest by default: with --adapter, the training run\'s training_args.json (next to the adapter or in its run folder)',
    'gives the data, split and seed, and the records the adapter never saw are evaluated. A request that would score',
    'records the adapter was trained on (another --split or --seed, other data holding training records) is refused',
    'unless --allow-train-overlap is given.',
  ].join('\n'),
  flags: [
    modelFlag(),
    { name: 'adapter', kind: 'string', metavar: 'DIR', help: 'PEFT adapter folder (lora train --out, or one of its checkpoints)' },
    { name: 'data', kind: 'string', metavar: 'FILE', defaultText: 'the adapter\'s training data', help: 'CodeAlpaca-style JSON/JSONL/Parquet records' },
    { name: 'split', kind: 'number', min: 0, max: 1, defaultText: `the adapter's training split, else ${TRAINING_DEFAULTS.split}`, help: 'train fraction used in training; the held-out rest is evaluated (0: every record)' },
    { name: 'seed', kind: 'int', min: 0, defaultText: `the adapter's training seed, else ${TRAINING_DEFAULTS.seed}`, help: 'the split seed; sampling uses seed + example index' },
    { name: 'allow-train-overlap', kind: 'boolean', help: 'score records the adapter was trained on anyway (recorded in summary.json)' },
    { name: 'limit', kind: 'int', min: 1, help: 'evaluate the first N held-out records' },
    { name: 'max-new-tokens', kind: 'int', min: 1, default: 64, help: 'tokens to generate per record at most' },
    { name: 'metrics', kind: 'list', itemName: 'metric', choices: METRIC_NAMES, default: [...METRIC_NAMES], help: 'which metrics' },
    { name: 'out', kind: 'string', metavar: 'DIR', defaultText: 'eval/results/run-<time>', help: 'where traces.jsonl and summary.json go' },
    { name: 'json', kind: 'boolean', help: 'print the summary as JSON' },
    { name: 'name', kind: 'string', help: 'experiment name in summary.json and lora eval compare' },
    { name: 'temperature', kind: 'number', min: 0, default: 0, help: '0 = greedy' },
    { name: 'top-p', kind: 'number', min: 0, max: 1, default: 1, help: 'nucleus sampling mass' },
    { name: 'top-k', kind: 'int', min: 0, default: 0, help: 'sample from the k most likely tokens (0 = all)' },
    dtypeFlag(),
    deviceFlag(),
    { name: 'stemmer', kind: 'boolean', help: 'Porter-stem ROUGE tokens' },
    { name: 'no-synonyms', kind: 'boolean', help: 'METEOR without WordNet synonyms' },
    { name: 'wordnet', kind: 'string', metavar: 'DIR', defaultText: '$LORA_WORDNET_DIR, /usr/share/wordnet', help: 'WordNet 3.0 dict directory' },
    { name: 'replace-invalid-utf8', kind: 'boolean', help: 'replace bytes that are not UTF-8 with U+FFFD and warn (default: error)' },
    { name: 'judge-url', kind: 'string', metavar: 'URL', help: 'OpenAI-compatible endpoint (http://host:port, …/v1 or …/v1/chat/completions); key from $LORA_JUDGE_API_KEY' },
    { name: 'judge-model', kind: 'string', metavar: 'NAME', help: 'the judge model; rubrics: correctness, helpfulness (0..1)' },
    { name: 'judge-concurrency', kind: 'int', min: 1, default: 4, help: 'judge requests in flight' },
    { name: 'judge-retries', kind: 'int', min: 0, default: 3, help: 'retries per judge request' },
    { name: 'judge-timeout', kind: 'number', min: 0, minExclusive: true, default: 60, help: 'seconds per judge request' },
    ...TARGET_FLAGS,
  ],
};

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
  const { values: v, given } = parseFlags(RUN_SPEC, argv);
  const values = v as {
    model?: string; adapter?: string; data?: string; split?: number; seed?: number; 'allow-train-overlap'?: boolean; limit?: number;
    'max-new-tokens': number; metrics: MetricName[]; out?: string; json?: boolean; name?: string; temperature: number; 'top-p': number;
    'top-k': number; dtype: BaseDType; device: DeviceOption; stemmer?: boolean; 'no-synonyms'?: boolean; wordnet?: string;
    'replace-invalid-utf8'?: boolean; 'judge-url'?: string; 'judge-model'?: string; 'judge-concurrency': number; 'judge-retries': number;
    'judge-timeout': number;
  };
  const target = targetFromFlags(v);
  if (!values.model && !target) throw new UsageError('--model DIR|ID is required (or --target-url URL with --target-model NAME)');
  const training = values.adapter ? findTrainingRecord(values.adapter) : undefined;
  const dataPath = values.data ?? training?.dataPath;
  if (!dataPath) throw new UsageError(values.adapter ? `--data FILE is required (${values.adapter} has no training_args.json that names its data)` : '--data FILE is required');
  const split = given.has('split') ? values.split! : (training?.split ?? TRAINING_DEFAULTS.split);
  if (split === 1 && given.has('split')) throw new UsageError('--split 1 trains on every record and leaves none held out to evaluate (use the split training used, e.g. 0.5, or 0 to evaluate every record)');
  const seed = given.has('seed') ? values.seed! : (training?.seed ?? TRAINING_DEFAULTS.seed);
  const limit = values.limit;
  const maxNewTokens = values['max-new-tokens'];
  const metrics = [...new Set(values.metrics)];
  const judgeUrl = values['judge-url'];
  if ((judgeUrl === undefined) !== (values['judge-model'] === undefined)) throw new UsageError('--judge-url and --judge-model go together');
  const device = values.device;
  const dtype = values.dtype;
  const judge: JudgeOptions | undefined = judgeUrl
    ? {
        url: judgeUrl,
        model: values['judge-model']!,
        apiKey: process.env.LORA_JUDGE_API_KEY || undefined,
        concurrency: values['judge-concurrency'],
        retries: values['judge-retries'],
        timeoutMs: values['judge-timeout'] * 1000,
      }
    : undefined;
  // Missing WordNet (METEOR's synonyms) and a bad --judge-url are reported before any generation runs.
  if (metrics.includes('meteor') && !values['no-synonyms']) loadWordNet(values.wordnet);
  if (judge) chatCompletionsUrl(judge.url);
  const out = resolve(values.out ?? join('eval', 'results', `run-${new Date().toISOString().replace(/[:.]/g, '-')}`));

  const readOpts = { invalidUtf8: values['replace-invalid-utf8'] ? ('replace' as const) : ('error' as const) };
  const { records, warnings } = await readEvalRecords(dataPath, readOpts);
  for (const w of warnings) process.stderr.write(`lora eval: warning: ${w}\n`);
  if (!records.length) {
    process.stderr.write(`lora eval: ${dataPath} holds no records\n`);
    return 1;
  }
  // The held-out records by position, as splitTrainTest deals them (split 0: every record).
  const indices = records.map((_, i) => i);
  const heldAll = split === 0 ? indices : splitTrainTest(indices, split, seed).test;
  const heldIdx = limit === undefined ? heldAll : heldAll.slice(0, limit);
  if (!heldIdx.length) {
    if (training && !given.has('split')) {
      throw new EvalSplitError('E_EVAL_NO_HELD_OUT', `the adapter was trained with split ${split} on ${dataPath} (${training.file}), so none of its records is held out; ` +
        'evaluate other data with --data, or pass --split 0 --allow-train-overlap to score training records knowingly');
    }
    process.stderr.write(`lora eval: --split ${split} of ${records.length} record${records.length === 1 ? '' : 's'} leaves none held out to evaluate\n`);
    return 1;
  }
  const held = heldIdx.map((i) => records[i]);
  const overlap = training
    ? await checkOverlap(training, { path: dataPath, sha256: fileSha256(dataPath), records }, heldIdx, async (p) => (await readEvalRecords(p, readOpts)).records)
    : undefined;
  if (overlap?.overlap) {
    const what = `${overlap.overlap} of the ${held.length} records to evaluate ${overlap.overlap === 1 ? 'was' : 'were'} in the adapter's training set ` +
      `(trained with split ${training!.split}, seed ${training!.seed} on ${training!.dataPath}; evaluating split ${split}, seed ${seed} of ${dataPath})`;
    if (!values['allow-train-overlap']) {
      throw new EvalSplitError('E_EVAL_TRAIN_OVERLAP', `${what}. Leave out --split/--seed to evaluate the held-out records, or pass --allow-train-overlap to score them anyway`);
    }
    process.stderr.write(`lora eval: WARNING: ${what}; its scores are inflated (--allow-train-overlap)\n`);
  } else if (overlap?.note) {
    process.stderr.write(`lora eval: warning: cannot check for training records: ${overlap.note}\n`);
  } else if (values.adapter && !training) {
    process.stderr.write(`lora eval: warning: ${values.adapter} has no training_args.json, so its training records are unknown; using split ${split}, seed ${seed}\n`);
  }

  const tok = target ? undefined : await AutoTokenizer.fromPretrained(values.model!);
  const model = target ? undefined : await AutoModelForCausalLM.fromPretrained(values.model!, { device, dtype });
  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  try {
    if (values.adapter) await model!.loadAdapter(values.adapter);
    process.stderr.write(`lora eval: ${held.length} held-out record${held.length === 1 ? '' : 's'} of ${records.length} (split ${split}, seed ${seed}${training ? `, from ${training.file}` : ''})\n`);
    const plain = !process.stderr.isTTY;
    // The same pipeline either way; only where the outputs come from differs.
    const result = await (target ? evaluateTarget.bind(null, target) : evaluateModel.bind(null, model!, tok!))(
      held,
      {
        maxNewTokens, seed, metrics,
        temperature: values.temperature,
        topP: values['top-p'],
        topK: values['top-k'],
        score: {
          rougeStemmer: values.stemmer === true,
          meteor: { synonyms: !values['no-synonyms'], ...(values.wordnet ? { wordnet: values.wordnet } : {}) },
        },
        ...(judge ? { judge } : {}),
        name: values.name ?? 'lora-eval',
        config: {
          model: values.model, adapter: values.adapter ?? null, data: dataPath, split, seed, limit: limit ?? null,
          trainingArgs: training?.file ?? null, trainOverlap: overlap ? { records: overlap.overlap, method: overlap.method } : null,
          heldOut: held.length, records: records.length, dtype, device: model?.device.backend ?? null,
          ...(target ? { model: v['target-model'] as string, targetUrl: target.endpoint, targetApi: target.api } : {}),
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
    for (const w of result.summary.warnings) process.stderr.write(`lora eval: warning: ${w}\n`);
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
    model?.dispose();
  }
}
