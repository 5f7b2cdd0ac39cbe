export { readRecords, parseRecords, toRecord, type InstructionRecord, type RecordFormat } from './records.js';
export { alpacaPrompt } from './template.js';
export { seededRandom, shuffled, splitTrainTest } from './split.js';
export {
  tokenizeRecord,
  makeBatches,
  IGNORE_INDEX,
  type TokenizerLike,
  type Example,
  type ExampleOptions,
  type Batch,
  type BatchOptions,
} from './batches.js';
export { syntheticCodeInstructions } from './synthetic.js';
export { prepareExamples, describeData, type DataSummary } from './summary.js';
export {
  toTrainingRecord, parseTrainingRecords, readTrainingRecords, isChatRecord, type ChatRecord, type TrainingRecord,
} from './chat-records.js';
export { tokenizeTrainingRecord, type ChatTokenizerLike } from './chat-tokenize.js';
