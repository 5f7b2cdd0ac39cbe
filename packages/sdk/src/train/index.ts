export { Trainer, yieldToEventLoop, type TrainerOptions, type TrainResult } from './trainer.js';
export type { TrainEvent, TrainEventListener, TrainMetrics } from './events.js';
export { learningRate, type Schedule, type ScheduleKind } from './schedule.js';
export { latestCheckpoint, listCheckpoints, readVerifiedState, type TrainerState, type LoraTrainerSection } from './checkpoint.js';
export type { HfTrainerState, HfLogEntry } from './hf-state.js';
export { RunRecorder, writeTrainingArgs, formatMetrics, TRAINER_LOG, TRAIN_RESULTS, TRAINING_ARGS, type TrainingArgsRecord, type ReportTo } from './records.js';
export { TensorBoardWriter } from './tensorboard.js';
export { prepareOutputDir, type OutputDir } from './output-dir.js';
