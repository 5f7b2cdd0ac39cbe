// Text-generation metrics that agree with the implementations people cite: sacreBLEU's BLEU,
// Google's rouge-score, NLTK's METEOR; and the scoring of prediction/reference files on top of them.
export { EvalError, type EvalErrorCode } from './errors.js';
export { PorterStemmer, defaultStemmer, type PorterMode } from './porter.js';
export {
  corpusBleu, sentenceBleu, computeBleu, bleuStatistics, bleuFromStatistics, referenceStreams,
  tokenize13a, tokenizeIntl, tokenizeChar,
  type BleuOptions, type BleuScore, type BleuSmoothMethod, type BleuTokenizer, type BleuStats,
} from './bleu.js';
export {
  rougeScore, rougeScoreMulti, rougeTokenize, DEFAULT_ROUGE_TYPES,
  type RougeOptions, type RougeTriple, type RougeType,
} from './rouge.js';
export {
  WordNet, loadWordNet, findWordNetDir, WORDNET_SEARCH_PATHS, WORDNET_INSTALL_HINT, type WordNetPos,
} from './wordnet.js';
export { meteorScore, singleMeteorScore, meteorAlign, countChunks, type MeteorOptions, type MeteorTokenizer } from './meteor.js';
export { treebankTokenize } from './treebank.js';
export {
  scorePredictions, METRIC_NAMES,
  type MetricName, type ScoreExample, type ScoreOptions, type ScoreReport, type ExampleScores, type CorpusScores, type PRF,
} from './score.js';
export { parseScoreInput, type ParsedInput, type ParseInputOptions } from './input.js';
export {
  evaluateModel, scoreEvaluation, traceRecord, tracesJsonl, writeEvalOutputs, benchEvalMetrics, generationErrorNote, percentile, latencyStats, EVAL_SCHEMA,
  type EvaluateOptions, type EvalExample, type EvalExampleJudge, type EvalSummary, type EvalResult, type EvalProgress, type LatencyStats,
} from './evaluate.js';
export { evalWarnings, type WarningInput } from './warnings.js';
export {
  judgeExamples, parseJudgeReply, chatCompletionsUrl, judgeUserMessage, JudgeError, JUDGE_RUBRICS,
  type JudgeOptions, type JudgeRubric, type JudgeVerdict, type JudgeItem, type JudgeRunResult, type JudgeErrorCode,
} from './judge.js';
export { OpenAITarget, evaluateTarget, targetEndpoint, type OpenAITargetOptions, type TargetApi, type TargetGeneration, type TargetRequest } from './openai-target.js';
export { readEvalRecords, heldOutRecords, type ReadEvalRecordsOptions } from './records.js';
export {
  loadExperiments, compareTable, experimentFromSummary, experimentsFromBench,
  type Experiment, type CompareColumn, type CompareTable,
} from './compare.js';
