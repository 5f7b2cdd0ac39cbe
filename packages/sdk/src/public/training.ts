/**
 * The Trainer (AdamW, linear/cosine schedules with warmup, gradient accumulation, clipping,
 * checkpoints with exact resume, AbortSignal), its events, the documented defaults shared with the
 * `lora` command line ({@link TRAINING_DEFAULTS}), and the rank/format sweep behind `lora bench`.
 *
 * @module Training
 */
export * from '../train/index.js';
export * from '../defaults/index.js';
export * from '../bench/index.js';
