/**
 * The one set of training defaults that `lora train`, `lora bench`, `lora eval` and the SDK's
 * {@link Trainer} share, so that a flag left out of the command line and an option left out of
 * code mean the same thing. Each value says where it comes from.
 */
export const TRAINING_DEFAULTS = {
  /** LoRA rank (PEFT's LoraConfig default is 8). */
  r: 8,
  /** alpha = 4 × r: the seed experiment's setting (r = 8 → alpha 32). PEFT's own default is alpha = 8. */
  alphaPerRank: 4,
  /** Dropout on the LoRA branch's input (the seed experiment's 0.1; PEFT's default is 0). */
  dropout: 0.1,
  /** Which linears get a LoRA branch (PEFT's default for OPT: q_proj and v_proj). */
  targets: ['q_proj', 'v_proj'] as const,
  /**
   * Peak learning rate 2e-4: the common LoRA/QLoRA choice (PEFT and QLoRA examples use 1e-4 to 3e-4).
   * HF Trainer's 5e-5 is meant for full fine-tuning and moves a zero-initialised B too slowly.
   * (`lora bench` on its embedded, randomly initialised tiny model uses its own documented 1e-3,
   * `EMBEDDED_DEFAULTS.lr`: at 2e-4 its 200-step curves stay flat and the ranks cannot be told apart.)
   */
  lr: 2e-4,
  /** linear decay after warmup, as HF's default lr_scheduler_type. */
  schedule: 'linear' as const,
  batchSize: 4,
  gradAccum: 1,
  /** Tokens per training sequence; longer records are truncated (and counted). */
  seq: 256,
  epochs: 1,
  /**
   * Fraction of the records used for training; the rest is held out for `lora eval` and
   * `--eval-steps`. 0.5 is the seed experiment's split, and one value for train, bench and eval
   * keeps an eval with no flags on records the training never saw.
   */
  split: 0.5,
  /** Seed for the split, the shuffle, the LoRA init and dropout. */
  seed: 42,
  saveSteps: 100,
  loggingSteps: 10,
  /** HF's max_grad_norm. */
  maxGradNorm: 1.0,
  weightDecay: 0,
} as const;

/** The alpha used when none is given: {@link TRAINING_DEFAULTS}.alphaPerRank × r. */
export function defaultAlpha(r: number): number {
  return TRAINING_DEFAULTS.alphaPerRank * r;
}
