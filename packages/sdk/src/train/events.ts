// What a training run reports, as a discriminated union on `type`.
import type { HfLogEntry, HfTrainerState } from './hf-state.js';

/** HF's train metrics (train_results.json and the "***** train metrics *****" summary). */
export interface TrainMetrics {
  epoch: number;
  /** Mean loss over every optimizer step of the run (HF's train_loss), not the last step's. */
  train_loss: number;
  /** Seconds this session trained (a resumed run counts from its resume). */
  train_runtime: number;
  train_samples_per_second: number;
  train_steps_per_second: number;
  train_tokens_per_second: number;
  total_flos: number;
}

export type TrainEvent =
  | {
      type: 'start';
      totalSteps: number;
      startStep: number;
      stepsPerEpoch: number;
      /** Epochs the run covers (fractional when maxSteps ends mid-epoch). */
      epochs: number;
      trainableParams: number;
      allParams: number;
      backend: string;
    }
  | {
      type: 'step';
      step: number;
      loss: number;
      /** Bias-corrected exponential moving average of the loss (β = 0.9), what a progress bar shows. */
      smoothedLoss: number;
      lr: number;
      gradNorm: number;
      /** Data-parallel runs: milliseconds this step spent in the all-reduces (waiting for slower ranks included). */
      commMs?: number;
      tokens: number;
      tokensPerSec: number;
      elapsedMs: number;
      /** Fractional epoch after this step (HF's `epoch`). */
      epoch: number;
    }
  | { type: 'log'; round: number; step: number; meanLoss: number; entry: HfLogEntry }
  | { type: 'eval'; step: number; epoch: number; loss: number; perplexity: number; samples: number; runtimeMs: number; best: boolean }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'warning'; message: string }
  | { type: 'best'; step: number; path: string; metric: number }
  | { type: 'nan'; step: number; message: string; lastCheckpoint: string | undefined }
  | { type: 'done'; step: number; reason: 'finished' | 'aborted' | 'nan'; elapsedMs: number; metrics: TrainMetrics; state: HfTrainerState };

export type TrainEventListener = (e: TrainEvent) => void;
