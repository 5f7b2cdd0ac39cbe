// `lora train`: LoRA fine-tuning of an OPT model on CodeAlpaca-style data; writes the adapter in
// PEFT's format, with resumable checkpoints under OUT/checkpoints. Parsing here, behaviour in
// train-run.ts.
import { defaultAlpha, type BaseDType, type DeviceOption, type LoraTarget, type ScheduleKind } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { parseFlags, type CommandSpec, type FlagValue } from '../flags.js';
import { expandTargets } from './common-flags.js';
import { TRAIN_SPEC } from './train-flags.js';
import { runTrain, TRAIN_RUN_FLAGS } from './train-run.js';

const SPEC: CommandSpec = { ...TRAIN_SPEC, flags: [...TRAIN_SPEC.flags, ...TRAIN_RUN_FLAGS] };

export const trainCommand: Command = {
  name: 'train',
  summary: 'Fine-tune an OPT model with LoRA and save a PEFT adapter',
  spec: SPEC,
  async run(argv) {
    const { values } = parseFlags(SPEC, argv);
    if (!values.model || !values.data || !values.out) throw new UsageError('--model, --data and --out are required');
    const n = (v: FlagValue) => v as number;
    const opt = (v: FlagValue) => v as number | undefined;
    const r = n(values.r);
    return runTrain({
      model: values.model as string, data: values.data as string, out: values.out as string,
      r, alpha: values.alpha === undefined ? defaultAlpha(r) : n(values.alpha), dropout: n(values.dropout),
      targets: expandTargets(values.targets as string[]) as LoraTarget[], rslora: values.rslora === true,
      steps: opt(values.steps), epochs: opt(values.epochs), batch: n(values.batch), gradAccum: n(values['grad-accum']), seq: n(values.seq),
      lr: n(values.lr), schedule: values.schedule as ScheduleKind, warmup: opt(values.warmup), warmupRatio: opt(values['warmup-ratio']) ?? 0,
      loggingSteps: n(values['logging-steps']), split: n(values.split), responseOnly: values['response-only'] === true, packing: values.packing === true,
      dtype: values.dtype as BaseDType, device: values.device as DeviceOption, seed: n(values.seed), saveSteps: n(values['save-steps']),
      resume: values.resume === true, checkpointing: values.checkpointing === true, overwriteOutputDir: values['overwrite-output-dir'] === true,
      saveTotalLimit: opt(values['save-total-limit']), reportTo: values['report-to'] as 'none' | 'tensorboard', evalSteps: opt(values['eval-steps']),
      loadBestModelAtEnd: values['load-best-model-at-end'] === true, weightDecay: n(values['weight-decay']), maxGradNorm: n(values['max-grad-norm']),
      progressSeconds: n(values['progress-seconds']), argv,
    });
  },
};
