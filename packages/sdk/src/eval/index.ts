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
