/**
 * Generation-based evaluation of a model (and its adapter) on instruction records: for each record,
 * the training template's prompt is generated from (KV-cached, batch 1), the output is scored against
 * the record's reference output with `scorePredictions` (the same code as `lora eval score`), and the
 * example is recorded with its prompt/output/reference, token counts, latency (time to first token,
 * total), scores and any error. An optional LLM judge adds correctness/helpfulness scores.
 *
 * No example is ever dropped: a generation that fails (e.g. a prompt longer than the model's
 * positions) is recorded with its `error` and scored as an empty prediction (0 on every metric);
 * empty references and empty generations score 0 with a note, as `scorePredictions` documents.
 */
import { randomUUID } from 'node:crypto';

import type { InstructionRecord } from '../data/records.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import { alpacaPrompt } from '../data/template.js';
import type { CausalLM } from '../models/causal-lm.js';
import type { PreTrainedTokenizer } from '../tokenizer/auto-tokenizer.js';
import { judgeExamples, JUDGE_RUBRICS, type JudgeOptions, type JudgeRubric, type JudgeVerdict } from './judge.js';
import { METRIC_NAMES, scorePredictions, type CorpusScores, type MetricName, type ScoreOptions } from './score.js';
import { evalWarnings } from './warnings.js';

export const EVAL_SCHEMA = 'lora-eval/1' as const;

export interface EvaluateOptions {
  /** Default 64. */
  maxNewTokens?: number;
  /** 0 (default): greedy. */
  temperature?: number;
  topP?: number;
  topK?: number;
  /** Sampling seed (default 0); example i uses seed + i. */
  seed?: number;
  /** Default: the model's eos. */
  stopTokens?: number[];
  /** Default: bleu, rouge, meteor. */
  metrics?: readonly MetricName[];
  /** Metric options passed to scorePredictions (ROUGE stemmer, BLEU tokenizer, METEOR/WordNet). */
  score?: Omit<ScoreOptions, 'metrics'>;
  /** LLM-as-judge; absent: no judge. */
  judge?: JudgeOptions;
  /** Experiment name (summary and trace names). Default 'lora-eval'. */
  name?: string;
  /** Echoed into the summary's config (model, adapter, data, split, ...). */
  config?: Record<string, unknown>;
  signal?: AbortSignal;
}

export interface EvalExampleJudge {
  correctness?: JudgeVerdict;
  helpfulness?: JudgeVerdict;
}

export interface EvalExample {
  /** Trace/run id (UUID v4). */
  id: string;
  /** 0-based position among the evaluated records. */
  index: number;
  instruction: string;
  input: string;
  prompt: string;
  output: string;
  reference: string;
  tokensIn: number;
  tokensOut: number;
  stoppedBy?: string;
  timeToFirstTokenMs?: number;
  totalMs?: number;
  startTime: string;
  endTime: string;
  /** Per-example scores: bleu (sacreBLEU sentence BLEU, 0..100), rouge1/2/L/Lsum F, meteor, judge_<rubric>. */
  scores: Record<string, number>;
  /** Why an example was scored as it was (empty output, empty reference, failed generation). */
  notes?: string[];
  /** Why generation failed, if it did. */
  error?: string;
  /** The failure's stable code when it had one (E_NON_FINITE: the logits went NaN/Inf). */
  errorCode?: string;
  judge?: EvalExampleJudge;
}

export interface LatencyStats {
  mean: number;
  p50: number;
  p95: number;
  max: number;
}

export interface EvalSummary {
  schema: typeof EVAL_SCHEMA;
  name: string;
  createdAt: string;
  config: Record<string, unknown>;
  count: number;
  /** Examples whose generation failed (scored as empty predictions). */
  errors: number;
  emptyOutputs: number;
  emptyReferences: number;
  /**
   * Flat means, the numbers tables compare: bleu (corpus BLEU, 0..100), rouge1/rouge2/rougeL/rougeLsum
   * (mean F), meteor (mean), judge_correctness / judge_helpfulness (mean over judged examples).
   */
  metrics: Record<string, number>;
  /** scorePredictions' corpus scores in full (BLEU details and signature, ROUGE P/R/F). */
  corpus: CorpusScores;
  /** Over examples that generated: time to first token and total generation time, ms. */
  latency: { timeToFirstTokenMs: LatencyStats; totalMs: LatencyStats };
  tokens: { in: number; out: number; total: number };
  /** Generated tokens per second of generation time. */
  outputTokensPerSec: number;
  judge?: { model: string; url: string; rubrics: JudgeRubric[]; judged: number; errors: number; unreachable?: string };
  /** Sentences saying when scores measure nothing (empty or non-finite outputs); see eval/warnings.ts. */
  warnings: string[];
  wallSec: number;
}

export interface EvalResult {
  examples: EvalExample[];
  summary: EvalSummary;
}

export type EvalProgress =
  | { type: 'generated'; index: number; total: number; example: EvalExample }
  | { type: 'judged'; done: number; total: number };

/** Percentile with linear interpolation between order statistics (numpy's default). NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export function latencyStats(values: readonly number[]): LatencyStats {
  if (!values.length) return { mean: Number.NaN, p50: Number.NaN, p95: Number.NaN, max: Number.NaN };
  return {
    mean: values.reduce((a, b) => a + b, 0) / values.length,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    max: Math.max(...values),
  };
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

/** Generates, scores and (optionally) judges every record. See the module comment. */
export async function evaluateModel(
  model: CausalLM,
  tokenizer: PreTrainedTokenizer,
  records: readonly InstructionRecord[],
  opts: EvaluateOptions = {},
  onProgress?: (p: EvalProgress) => void,
): Promise<EvalResult> {
  const t0 = performance.now();
  const metrics = opts.metrics ?? METRIC_NAMES;
  const maxNewTokens = opts.maxNewTokens ?? 64;
  const seed = opts.seed ?? 0;
  const examples: EvalExample[] = [];
  for (const [index, r] of records.entries()) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');
    const prompt = alpacaPrompt(r);
    const ids = tokenizer.encode(prompt, { addSpecialTokens: true });
    const startTime = new Date();
    const ex: EvalExample = {
      id: randomUUID(), index, instruction: r.instruction, input: r.input, prompt, output: '', reference: r.output,
      tokensIn: ids.length, tokensOut: 0, startTime: startTime.toISOString(), endTime: '', scores: {},
    };
    try {
      const g = await model.generate(ids, {
        maxNewTokens, temperature: opts.temperature ?? 0, topP: opts.topP ?? 1, topK: opts.topK ?? 0, seed: seed + index,
        ...(opts.stopTokens ? { stopTokens: opts.stopTokens } : {}),
      });
      ex.output = tokenizer.decode(g.tokens, { skipSpecialTokens: true });
      ex.tokensOut = g.tokens.length;
      ex.stoppedBy = g.stoppedBy;
      ex.timeToFirstTokenMs = g.timeToFirstTokenMs;
      ex.totalMs = g.totalMs;
      ex.endTime = new Date(startTime.getTime() + g.totalMs).toISOString();
    } catch (e) {
      ex.error = e instanceof Error ? e.message : String(e);
      if (typeof (e as { code?: unknown })?.code === 'string') ex.errorCode = (e as { code: string }).code;
      ex.endTime = new Date().toISOString();
    }
    examples.push(ex);
    onProgress?.({ type: 'generated', index, total: records.length, example: ex });
    await yieldToLoop();
  }
  return scoreEvaluation(examples, opts, t0, onProgress);
}

/**
 * The scoring half of an evaluation, shared by the in-process model and an OpenAI-compatible target
 * (eval/openai-target.ts): metrics per example and for the corpus, the judge, latency and tokens.
 * `t0` is when the evaluation started (performance.now()), for wallSec.
 */
export async function scoreEvaluation(examples: EvalExample[], opts: EvaluateOptions, t0: number, onProgress?: (p: EvalProgress) => void): Promise<EvalResult> {
  const metrics = opts.metrics ?? METRIC_NAMES;
  const maxNewTokens = opts.maxNewTokens ?? 64;
  const seed = opts.seed ?? 0;
  const report = scorePredictions(
    examples.map((e) => ({ prediction: e.output, references: [e.reference] })),
    { ...opts.score, metrics },
  );
  for (const [i, s] of report.examples.entries()) {
    const ex = examples[i];
    if (s.sentenceBleu !== undefined) ex.scores.bleu = s.sentenceBleu;
    if (s.rouge) for (const [k, v] of Object.entries(s.rouge)) ex.scores[k] = v.f;
    if (s.meteor !== undefined) ex.scores.meteor = s.meteor;
    const notes = [...(ex.error ? ['generation failed: scored as an empty prediction'] : []), ...(s.notes ?? [])];
    if (notes.length) ex.notes = notes;
  }

  const summaryMetrics: Record<string, number> = {};
  const c = report.corpus;
  if (c.bleu) summaryMetrics.bleu = c.bleu.score;
  if (c.rouge) for (const [k, v] of Object.entries(c.rouge)) summaryMetrics[k] = v.f;
  if (c.meteor !== undefined) summaryMetrics.meteor = c.meteor;

  let judgeSummary: EvalSummary['judge'];
  if (opts.judge) {
    const rubrics = [...(opts.judge.rubrics ?? JUDGE_RUBRICS)];
    const run = await judgeExamples(
      examples.map((e) => ({ instruction: e.instruction, input: e.input, reference: e.reference, output: e.output })),
      { ...opts.judge, rubrics, signal: opts.judge.signal ?? opts.signal },
      (done, total) => onProgress?.({ type: 'judged', done, total }),
    );
    let judged = 0;
    for (const [i, v] of run.verdicts.entries()) {
      examples[i].judge = v;
      let any = false;
      for (const r of rubrics) {
        const score = v[r]?.score;
        if (score !== undefined) {
          examples[i].scores[`judge_${r}`] = score;
          any = true;
        }
      }
      if (any) judged++;
    }
    for (const r of rubrics) {
      const vals = examples.map((e) => e.scores[`judge_${r}`]).filter((x): x is number => x !== undefined);
      if (vals.length) summaryMetrics[`judge_${r}`] = vals.reduce((a, b) => a + b, 0) / vals.length;
    }
    judgeSummary = {
      model: opts.judge.model, url: opts.judge.url, rubrics, judged, errors: run.errors,
      ...(run.unreachable !== undefined ? { unreachable: run.unreachable } : {}),
    };
  }

  const ok = examples.filter((e) => e.error === undefined);
  const tokensIn = examples.reduce((a, e) => a + e.tokensIn, 0);
  const tokensOut = examples.reduce((a, e) => a + e.tokensOut, 0);
  const genMs = ok.reduce((a, e) => a + (e.totalMs ?? 0), 0);
  const summary: EvalSummary = {
    schema: EVAL_SCHEMA,
    name: opts.name ?? 'lora-eval',
    createdAt: new Date().toISOString(),
    config: { ...opts.config, maxNewTokens, temperature: opts.temperature ?? 0, topP: opts.topP ?? 1, topK: opts.topK ?? 0, seed, metrics: [...metrics] },
    count: examples.length,
    errors: examples.length - ok.length,
    emptyOutputs: c.emptyPredictions,
    emptyReferences: c.emptyReferences,
    metrics: summaryMetrics,
    corpus: c,
    latency: {
      timeToFirstTokenMs: latencyStats(ok.map((e) => e.timeToFirstTokenMs ?? 0)),
      totalMs: latencyStats(ok.map((e) => e.totalMs ?? 0)),
    },
    tokens: { in: tokensIn, out: tokensOut, total: tokensIn + tokensOut },
    outputTokensPerSec: genMs > 0 ? (1000 * ok.reduce((a, e) => a + e.tokensOut, 0)) / genMs : 0,
    ...(judgeSummary ? { judge: judgeSummary } : {}),
    warnings: evalWarnings({ examples, emptyOutputs: c.emptyPredictions, metrics: summaryMetrics }),
    wallSec: (performance.now() - t0) / 1000,
  };
  return { examples, summary };
}

/**
 * One LangSmith-style run record per example (a line of traces.jsonl): an 'llm' run with its inputs,
 * outputs, reference, start/end times, timings, token usage, scores (as feedback) and error.
 */
export function traceRecord(ex: EvalExample, summary: Pick<EvalSummary, 'name' | 'config'>): Record<string, unknown> {
  const judge: Record<string, unknown> = {};
  for (const [r, v] of Object.entries(ex.judge ?? {})) if (v) judge[r] = v;
  return {
    id: ex.id,
    trace_id: ex.id,
    name: `${summary.name}/generate`,
    run_type: 'llm',
    start_time: ex.startTime,
    end_time: ex.endTime,
    inputs: { prompt: ex.prompt, instruction: ex.instruction, input: ex.input },
    outputs: ex.error === undefined ? { output: ex.output, stopped_by: ex.stoppedBy } : null,
    reference_outputs: { output: ex.reference },
    error: ex.error ?? null,
    prompt_tokens: ex.tokensIn,
    completion_tokens: ex.tokensOut,
    total_tokens: ex.tokensIn + ex.tokensOut,
    timings: { time_to_first_token_ms: ex.timeToFirstTokenMs ?? null, total_ms: ex.totalMs ?? null },
    scores: ex.scores,
    ...(Object.keys(judge).length ? { judge } : {}),
    ...(ex.notes ? { notes: ex.notes } : {}),
    extra: { metadata: { index: ex.index, experiment: summary.name, model: summary.config.model ?? null, adapter: summary.config.adapter ?? null } },
    tags: ['lora-eval'],
  };
}

/** traces.jsonl text: one JSON line per example, in order. */
export function tracesJsonl(result: EvalResult): string {
  return result.examples.map((e) => JSON.stringify(traceRecord(e, result.summary))).join('\n') + (result.examples.length ? '\n' : '');
}

/** Writes OUT/traces.jsonl and OUT/summary.json; returns their paths. */
export async function writeEvalOutputs(result: EvalResult, outDir: string): Promise<{ traces: string; summary: string }> {
  const { mkdir } = await import('node:fs/promises');
  const { join } = await import('node:path');
  await mkdir(outDir, { recursive: true });
  const traces = join(outDir, 'traces.jsonl');
  const summary = join(outDir, 'summary.json');
  // Atomic, so an interrupted run never leaves a half-written summary that eval compare would read.
  const utf8 = (text: string) => [new TextEncoder().encode(text)];
  await writeFileAtomic(traces, utf8(tracesJsonl(result)));
  await writeFileAtomic(summary, utf8(`${JSON.stringify(result.summary, jsonSafe, 2)}\n`));
  return { traces, summary };
}

/** NaN/Infinity are not JSON: write them as null. */
function jsonSafe(_k: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? null : v;
}

/** The mean metrics `lora bench --eval N` puts into RunResult.eval, with the count of failed generations. */
export function benchEvalMetrics(summary: EvalSummary): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of ['bleu', 'rouge1', 'rouge2', 'rougeL', 'meteor']) if (summary.metrics[k] !== undefined) out[k] = summary.metrics[k];
  if (Number.isFinite(summary.latency.timeToFirstTokenMs.p50)) out.ttft_p50_ms = summary.latency.timeToFirstTokenMs.p50;
  if (Number.isFinite(summary.latency.totalMs.p50)) out.latency_p50_ms = summary.latency.totalMs.p50;
  // Failed generations score 0; the count keeps such zeros from passing for a model's quality.
  out.errors = summary.errors;
  return out;
}

/** A sentence about failed generations (count and the first error), or undefined when none failed. */
export function generationErrorNote(result: EvalResult): string | undefined {
  const failed = result.examples.filter((e) => e.error !== undefined);
  if (!failed.length) return undefined;
  return `${failed.length} of ${result.examples.length} generation${result.examples.length === 1 ? '' : 's'} failed and scored 0 (first error: ${failed[0].error})`;
}
