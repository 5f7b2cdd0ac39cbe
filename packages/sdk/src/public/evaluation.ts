/**
 * Evaluation: generation on held-out records scored with BLEU (sacreBLEU), ROUGE (rouge-score) and
 * METEOR (NLTK), an optional LLM judge, traces and summaries, comparison tables, and `lora check`'s
 * per-tensor parity with PyTorch. Tokenizers, stemmers and alignment helpers that the metrics use
 * inside are not part of the API.
 *
 * @module Evaluation
 */
export { EvalError, type EvalErrorCode } from '../eval/errors.js';
export {
  corpusBleu, sentenceBleu, computeBleu,
  type BleuOptions, type BleuScore, type BleuSmoothMethod, type BleuTokenizer, type BleuStats,
} from '../eval/bleu.js';
export { rougeScore, rougeScoreMulti, DEFAULT_ROUGE_TYPES, type RougeOptions, type RougeTriple, type RougeType } from '../eval/rouge.js';
export { loadWordNet, findWordNetDir, WORDNET_INSTALL_HINT, type WordNetPos } from '../eval/wordnet.js';
export { meteorScore, singleMeteorScore, type MeteorOptions, type MeteorTokenizer } from '../eval/meteor.js';
export {
  scorePredictions, METRIC_NAMES,
  type MetricName, type ScoreExample, type ScoreOptions, type ScoreReport, type ExampleScores, type CorpusScores, type PRF,
} from '../eval/score.js';
export { parseScoreInput, type ParsedInput, type ParseInputOptions } from '../eval/input.js';
export {
  evaluateModel, scoreEvaluation, traceRecord, writeEvalOutputs, benchEvalMetrics, generationErrorNote, percentile, latencyStats, EVAL_SCHEMA,
  type EvaluateOptions, type EvalExample, type EvalExampleJudge, type EvalSummary, type EvalResult, type EvalProgress, type LatencyStats,
} from '../eval/evaluate.js';
export { evalWarnings, type WarningInput } from '../eval/warnings.js';
export {
  judgeExamples, parseJudgeReply, chatCompletionsUrl, JudgeError, JUDGE_RUBRICS,
  type JudgeOptions, type JudgeRubric, type JudgeVerdict, type JudgeItem, type JudgeRunResult, type JudgeErrorCode,
} from '../eval/judge.js';
export { readEvalRecords, heldOutRecords, type ReadEvalRecordsOptions } from '../eval/records.js';
export {
  loadExperiments, compareTable, experimentFromSummary, experimentsFromBench,
  type Experiment, type CompareColumn, type CompareTable,
} from '../eval/compare.js';
export * from '../check/index.js';
export { OpenAITarget, evaluateTarget, targetEndpoint, type OpenAITargetOptions, type TargetApi, type TargetGeneration, type TargetRequest } from '../eval/openai-target.js';
