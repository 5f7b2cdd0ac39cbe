// `lora train`: LoRA fine-tuning of an OPT model on CodeAlpaca-style data; writes the adapter in
// PEFT's format, with resumable checkpoints under OUT/checkpoints.
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  OptForCausalLM, OptTokenizer, readRecords, splitTrainTest, tokenizeRecord, Trainer,
  type BaseDType, type DeviceOption, type LoraTarget, type ScheduleKind,
} from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { Progress } from '../progress.js';

export const trainCommand: Command = {
  name: 'train',
  summary: 'Fine-tune an OPT model with LoRA and save a PEFT adapter',
  usage: `lora train --model DIR|ID --data FILE --out DIR [options]
  --r 8 --alpha 32 --dropout 0.1 --targets q_proj,v_proj [--rslora]
  --steps N | --epochs N   --batch 4 --grad-accum 1 --seq 256 --lr 2e-4 --schedule linear|cosine|constant --warmup N
  --split 1.0 (train fraction)  --response-only  --packing  --dtype f32|bf16|f16|int8|int4|nf4  --device auto|cpu|cuda
  --seed 42  --save-steps N  --resume (continue from the newest checkpoint in OUT/checkpoints)  --checkpointing`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        model: { type: 'string' }, data: { type: 'string' }, out: { type: 'string' }, r: { type: 'string' }, alpha: { type: 'string' },
        dropout: { type: 'string' }, targets: { type: 'string' }, rslora: { type: 'boolean' }, steps: { type: 'string' },
        epochs: { type: 'string' }, batch: { type: 'string' }, 'grad-accum': { type: 'string' }, seq: { type: 'string' },
        lr: { type: 'string' }, schedule: { type: 'string' }, warmup: { type: 'string' }, split: { type: 'string' },
        'response-only': { type: 'boolean' }, packing: { type: 'boolean' }, dtype: { type: 'string' }, device: { type: 'string' },
        seed: { type: 'string' }, 'save-steps': { type: 'string' }, resume: { type: 'boolean' }, checkpointing: { type: 'boolean' },
      },
    });
    if (!values.model || !values.data || !values.out) throw new UsageError('--model, --data and --out are required');
    const n = (s: string | undefined, d: number | undefined, name: string): number | undefined => {
      if (s === undefined) return d;
      const v = Number(s);
      if (!Number.isFinite(v)) throw new UsageError(`--${name} must be a number, got '${s}'`);
      return v;
    };
    const r = n(values.r, 8, 'r')!;
    const seq = n(values.seq, 256, 'seq')!;
    const seed = n(values.seed, 42, 'seed')!;
    const tok = await OptTokenizer.fromPretrained(values.model);
    const records = await readRecords(values.data);
    const { train } = splitTrainTest(records, n(values.split, 1, 'split')!, seed);
    const examples = train.map((rec) => tokenizeRecord(tok, rec, { maxLength: seq, responseOnly: values['response-only'] }));
    const model = await OptForCausalLM.fromPretrained(values.model, { device: (values.device ?? 'auto') as DeviceOption, dtype: (values.dtype ?? 'f32') as BaseDType });
    try {
      model.addLora({
        r, alpha: n(values.alpha, 4 * r, 'alpha')!, dropout: n(values.dropout, 0.1, 'dropout'),
        targetModules: (values.targets?.split(',') ?? ['q_proj', 'v_proj']) as LoraTarget[], useRslora: values.rslora, seed,
      });
      const progress = new Progress(process.stderr);
      const ac = new AbortController();
      const onSigint = () => ac.abort();
      process.once('SIGINT', onSigint);
      const trainer = new Trainer(model, {
        examples, batchSize: n(values.batch, 4, 'batch')!, gradAccum: n(values['grad-accum'], 1, 'grad-accum'), seq,
        maxSteps: n(values.steps, undefined, 'steps'), epochs: n(values.epochs, undefined, 'epochs'), lr: n(values.lr, 2e-4, 'lr'),
        schedule: (values.schedule ?? 'linear') as ScheduleKind, warmupSteps: n(values.warmup, undefined, 'warmup'),
        packing: values.packing, seed, checkpointDir: join(values.out, 'checkpoints'), saveSteps: n(values['save-steps'], 100, 'save-steps'),
        resumeFrom: values.resume ? 'latest' : undefined, activationCheckpointing: values.checkpointing, signal: ac.signal,
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
      await model.saveAdapter(values.out);
      progress.finish(`${result.reason}: ${result.steps} steps, final loss ${result.lossHistory.at(-1)?.toFixed(4)}; adapter written to ${values.out}`);
      return result.reason === 'aborted' ? 130 : 0;
    } finally {
      model.dispose();
    }
  },
};
