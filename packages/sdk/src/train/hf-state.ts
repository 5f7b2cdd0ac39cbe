// Hugging Face's TrainerState (transformers/trainer_callback.py) as this trainer fills it: the
// schema of trainer_state.json, so tools that read HF runs (plots of log_history, best-checkpoint
// lookups) read ours too. log_history holds one entry per logging step, per evaluation, and a last
// one with the run's totals, with HF's key names.
export interface HfLogEntry {
  step: number;
  epoch: number;
  [key: string]: number | null;
}

export interface HfTrainerState {
  best_global_step: number | null;
  best_metric: number | null;
  best_model_checkpoint: string | null;
  epoch: number;
  eval_steps: number | null;
  global_step: number;
  is_hyper_param_search: false;
  is_local_process_zero: true;
  is_world_process_zero: true;
  log_history: HfLogEntry[];
  logging_steps: number;
  max_steps: number;
  num_input_tokens_seen: number;
  num_train_epochs: number;
  save_steps: number;
  stateful_callbacks: Record<string, unknown>;
  total_flos: number;
  train_batch_size: number;
  trial_name: null;
  trial_params: null;
}

export function emptyHfState(o: { maxSteps: number; epochs: number; loggingSteps: number; saveSteps: number; evalSteps?: number; batchSize: number }): HfTrainerState {
  return {
    best_global_step: null,
    best_metric: null,
    best_model_checkpoint: null,
    epoch: 0,
    eval_steps: o.evalSteps ?? null,
    global_step: 0,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: [],
    logging_steps: o.loggingSteps,
    max_steps: o.maxSteps,
    num_input_tokens_seen: 0,
    num_train_epochs: o.epochs,
    save_steps: o.saveSteps,
    stateful_callbacks: {},
    total_flos: 0,
    train_batch_size: o.batchSize,
    trial_name: null,
    trial_params: null,
  };
}
