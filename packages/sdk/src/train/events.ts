// What a training run reports, as a discriminated union on `type`.
export type TrainEvent =
  | { type: 'start'; totalSteps: number; startStep: number; trainableParams: number; allParams: number; backend: string }
  | {
      type: 'step';
      step: number;
      loss: number;
      lr: number;
      gradNorm: number;
      tokens: number;
      tokensPerSec: number;
      elapsedMs: number;
      epoch: number;
    }
  | { type: 'log'; round: number; step: number; meanLoss: number }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'nan'; step: number; message: string; lastCheckpoint: string | undefined }
  | { type: 'done'; step: number; reason: 'finished' | 'aborted' | 'nan'; elapsedMs: number };

export type TrainEventListener = (e: TrainEvent) => void;
