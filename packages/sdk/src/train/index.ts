export { Trainer, type TrainerOptions, type TrainResult } from './trainer.js';
export type { TrainEvent, TrainEventListener } from './events.js';
export { learningRate, type Schedule, type ScheduleKind } from './schedule.js';
export { latestCheckpoint, type TrainerState } from './checkpoint.js';
