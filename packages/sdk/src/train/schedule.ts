// Learning-rate schedules as transformers' get_scheduler builds them (step counted from 0).
export type ScheduleKind = 'linear' | 'cosine' | 'constant';

export interface Schedule {
  kind: ScheduleKind;
  lr: number;
  warmupSteps: number;
  totalSteps: number;
}

/** The learning rate used for optimizer step `step` (0-based). */
export function learningRate(s: Schedule, step: number): number {
  if (s.warmupSteps > 0 && step < s.warmupSteps) return (s.lr * step) / s.warmupSteps;
  if (s.kind === 'constant') return s.lr;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / span);
  if (s.kind === 'linear') return s.lr * Math.max(0, 1 - progress);
  return s.lr * 0.5 * (1 + Math.cos(Math.PI * progress));
}
