// `lora train`: LoRA fine-tuning of an OPT model on CodeAlpaca-style data; writes the adapter in
// PEFT's format, with resumable checkpoints under OUT/checkpoints.
import { join } from 'node:path';

import {
  defaultAlpha, OptForCausalLM, OptTokenizer, readRecords, splitTrainTest, tokenizeRecord, Trainer,
  type BaseDType, type DeviceOption, type LoraTarget, type ScheduleKind,
} from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { parseFlags, type FlagValue } from '../flags.js';
import { Progress } from '../progress.js';
import { expandTargets } from './common-flags.js';
import { TRAIN_SPEC } from './train-flags.js';

export const trainCommand: Command = {
  name: 'train',
  summary: 'Fine-tune an OPT model with LoRA and save a PEFT adapter',
  spec: TRAIN_SPEC,
  async run(argv) {
    const { values } = parseFlags(TRAIN_SPEC, argv);
    if (!values.model || !values.data || !values.out) throw new UsageError('--model, --data and --out are required');
    const n = (v: FlagValue) => v as number;
    const r = n(values.r);
    const seq = n(values.seq);
    const seed = n(values.seed);
    const tok = await OptTokenizer.fromPretrained(values.model as string);
    const records = await readRecords(values.data as string);
    const { train } = splitTrainTest(records, n(values.split), seed);
    const examples = train.map((rec) => tokenizeRecord(tok, rec, { maxLength: seq, responseOnly: values['response-only'] === true }));
    const model = await OptForCausalLM.fromPretrained(values.model as string, { device: values.device as DeviceOption, dtype: values.dtype as BaseDType });
    try {
      model.addLora({
        r, alpha: values.alpha === undefined ? defaultAlpha(r) : n(values.alpha), dropout: n(values.dropout),
        targetModules: expandTargets(values.targets as string[]) as LoraTarget[], useRslora: values.rslora === true, seed,
      });
      const progress = new Progress(process.stderr);
      const ac = new AbortController();
      const onSigint = () => ac.abort();
      process.once('SIGINT', onSigint);
      const trainer = new Trainer(model, {
        examples, batchSize: n(values.batch), gradAccum: n(values['grad-accum']), seq,
        maxSteps: n(values.steps), epochs: n(values.epochs), lr: n(values.lr),
        schedule: values.schedule as ScheduleKind, warmupSteps: n(values.warmup), warmupRatio: (values['warmup-ratio'] as number | undefined) ?? 0, loggingSteps: n(values['logging-steps']),
        packing: values.packing === true, seed, checkpointDir: join(values.out as string, 'checkpoints'), saveSteps: n(values['save-steps']),
        resumeFrom: values.resume ? 'latest' : undefined, activationCheckpointing: values.checkpointing === true, signal: ac.signal,
        onEvent: (e) => {
          if (e.type === 'start') progress.start(`r=${r}`, e.totalSteps, `training on ${e.backend} from step ${e.startStep}`);
          if (e.type === 'step') progress.update(e.step, e.loss, e.lr, e.tokensPerSec);
          if (e.type === 'nan') progress.line(`! ${e.message}`);
        },
      });
      const result = await trainer.train();
      process.off('SIGINT', onSigint);
      if (result.reason === 'nan') {
        process.stderr.write(`lora train: ${result.message}\n`);
        return 1;
      }
      await model.saveAdapter(values.out as string);
      progress.finish(`${result.reason}: ${result.steps} steps, final loss ${result.lossHistory.at(-1)?.toFixed(4)}; adapter written to ${values.out}`);
      return result.reason === 'aborted' ? 130 : 0;
    } finally {
      model.dispose();
    }
  },
};
