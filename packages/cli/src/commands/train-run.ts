// What `lora train` does once its flags are parsed, in the order a user needs it: everything that
// can be refused is refused before the model loads (float flags past f32's range, an output folder
// that cannot be written, holds another run or is locked, --resume with nothing to resume, --seq
// past the model's positions); a data summary is printed before step 1; the run is recorded in OUT
// the way HF's Trainer records it; Ctrl-C once finishes the current step, writes checkpoint-<step>
// and says how to continue (exit 130), twice exits at once.
//
// Under `mpirun -np N` the run is data-parallel with no other flag (the SDK's Trainer `distributed`
// option): --batch is per rank, so a step trains on N × batch × grad-accum rows. Only rank 0 takes
// the output folder's lock, prints, and writes checkpoints, records and the adapter; every rank
// reads the same checkpoint on --resume. A rank that fails exits non-zero without MPI_Finalize and
// mpirun ends the others (its errmgr); a collective that waits past $LORA_DIST_TIMEOUT_S (600 s)
// fails with ERR_LORA_DIST_TIMEOUT the same way. Ctrl-C makes mpirun end every rank at once: the
// last checkpoint is kept and --resume continues from it.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';

import {
  connectDistributed, AutoModelForCausalLM, AutoTokenizer, describeData, formatMetrics, listCheckpoints, loadLlamaConfig, loadOptConfig, LoraError, prepareExamples, prepareOutputDir,
  readModelType, readTrainingRecords, splitTrainTest, Trainer, writeFileAtomic, writeTrainingArgs,
  type BaseDType, type DeviceOption, type LoraTarget, type ScheduleKind,
} from '@lora/sdk';

import { UsageError } from '../command.js';
import { TrainProgress } from './train-progress.js';

/** A flag declaration in flags.ts's FlagSpec shape (kept structural so this file stands alone). */
interface RunFlag {
  name: string;
  kind: 'boolean' | 'int' | 'number' | 'enum';
  help: string;
  default?: string | number | boolean;
  min?: number;
  minExclusive?: boolean;
  choices?: readonly string[];
  aliases?: readonly string[];
}

/** Flags this file adds to TRAIN_SPEC (HF TrainingArguments spellings as aliases). */
export const TRAIN_RUN_FLAGS: readonly RunFlag[] = [
  { name: 'overwrite-output-dir', kind: 'boolean', help: 'replace a previous run in --out (its checkpoints and records are deleted)', aliases: ['overwrite_output_dir'] },
  { name: 'save-total-limit', kind: 'int', min: 1, help: 'keep at most N checkpoints (the best one is never deleted)', aliases: ['save_total_limit'] },
  { name: 'report-to', kind: 'enum', choices: ['none', 'tensorboard'], default: 'none', help: 'also write TensorBoard event files under OUT/runs/', aliases: ['report_to'] },
  { name: 'eval-steps', kind: 'int', min: 1, help: 'every N steps, the loss and perplexity on the held-out records (1 - --split)', aliases: ['eval_steps'] },
  { name: 'load-best-model-at-end', kind: 'boolean', help: 'end with the adapter of the checkpoint with the lowest eval loss', aliases: ['load_best_model_at_end'] },
  { name: 'weight-decay', kind: 'number', min: 0, default: 0, help: 'AdamW weight decay', aliases: ['weight_decay'] },
  { name: 'max-grad-norm', kind: 'number', min: 0, default: 1, help: 'clip the global gradient norm (0: no clipping)', aliases: ['max_grad_norm'] },
  { name: 'progress-seconds', kind: 'number', min: 0, minExclusive: true, default: 10, help: 'off a terminal, a progress line every N seconds' },
];

export interface TrainRunOptions {
  model: string;
  data: string;
  out: string;
  r: number;
  alpha: number;
  dropout: number;
  targets: LoraTarget[];
  rslora: boolean;
  steps?: number;
  epochs?: number;
  batch: number;
  gradAccum: number;
  seq: number;
  lr: number;
  schedule: ScheduleKind;
  warmup?: number;
  warmupRatio: number;
  loggingSteps: number;
  split: number;
  responseOnly: boolean;
  packing: boolean;
  dtype: BaseDType;
  device: DeviceOption;
  seed: number;
  saveSteps: number;
  resume: boolean;
  checkpointing: boolean;
  overwriteOutputDir: boolean;
  saveTotalLimit?: number;
  reportTo: 'none' | 'tensorboard';
  evalSteps?: number;
  loadBestModelAtEnd: boolean;
  weightDecay: number;
  maxGradNorm: number;
  progressSeconds: number;
  /** The command line as typed, to print the --resume command after Ctrl-C. */
  argv: readonly string[];
}

const F32_MAX = 3.4028234663852886e38;

/** Float flags reach f32 kernels: a value finite in JS but past f32's range (1e39) would be Inf there. */
function checkFloats(o: TrainRunOptions): void {
  const floats: [string, number][] = [['lr', o.lr], ['alpha', o.alpha], ['dropout', o.dropout], ['weight-decay', o.weightDecay], ['max-grad-norm', o.maxGradNorm], ['warmup-ratio', o.warmupRatio]];
  for (const [name, v] of floats) {
    if (!Number.isFinite(v) || Math.abs(v) > F32_MAX) throw new UsageError(`--${name} ${v} is outside f32's range (±3.4e38); the optimizer and kernels compute in f32`);
  }
  if (o.loadBestModelAtEnd && !o.evalSteps) throw new UsageError('--load-best-model-at-end needs --eval-steps');
  if (o.loadBestModelAtEnd && o.saveSteps % o.evalSteps! !== 0) {
    throw new UsageError(`--load-best-model-at-end needs --save-steps (${o.saveSteps}) to be a multiple of --eval-steps (${o.evalSteps})`);
  }
  if (o.evalSteps && o.split >= 1) throw new UsageError('--eval-steps needs held-out records: use --split below 1');
}

export async function runTrain(o: TrainRunOptions): Promise<number> {
  checkFloats(o);
  const comm = await connectDistributed();
  const code = await runRank(o, comm);
  // Every rank reaches this with the same verdict (finished, stopped, non-finite), so all finalize.
  comm?.finalize();
  return code;
}

type Comm = Awaited<ReturnType<typeof connectDistributed>>;

/** Rank 0 speaks; the other ranks of a data-parallel run write nothing to the terminal. */
const silent = new Writable({ write: (_chunk, _enc, done) => done() });

async function runRank(o: TrainRunOptions, comm: Comm): Promise<number> {
  const writer = (comm?.rank ?? 0) === 0;
  const stderr = writer ? process.stderr : silent;
  const out = writer
    ? await prepareOutputDir(o.out, { resume: o.resume, overwrite: o.overwriteOutputDir })
    : { checkpoints: join(o.out, 'checkpoints'), release: () => {} };
  try {
    if (o.resume && !(await listCheckpoints(out.checkpoints)).length) {
      throw new LoraError('E_RESUME', `nothing to resume: ${out.checkpoints} holds no checkpoint (run without --resume to start)`);
    }
    // The model's positions, from its config when it is a local folder (a hub id is checked after loading).
    const configPath = join(o.model, 'config.json');
    const checkSeq = (positions: number) => {
      if (o.seq > positions) throw new UsageError(`--seq ${o.seq} exceeds the model's ${positions} positions (max_position_embeddings); use --seq ${positions} or less`);
    };
    if (existsSync(configPath)) checkSeq((await ((await readModelType(o.model)) === 'opt' ? loadOptConfig : loadLlamaConfig)(o.model)).maxPositionEmbeddings);

    const bytes = await readFile(o.data).catch((e: NodeJS.ErrnoException) => {
      throw new LoraError('E_FILE_NOT_FOUND', `${o.data}: cannot read the data file (${e.code})`);
    });
    const dataSha = createHash('sha256').update(bytes).digest('hex');
    const records = await readTrainingRecords(o.data); // Alpaca rows, messages or ShareGPT conversations
    const { train, test } = splitTrainTest(records, o.split, o.seed);
    const tok = await AutoTokenizer.fromPretrained(o.model); // tokenizer.json, else OPT's vocab.json + merges.txt
    const prepared = prepareExamples(tok, train, { seq: o.seq, responseOnly: o.responseOnly });
    stderr.write(`${o.data}: ${records.length} records; --split ${o.split} (seed ${o.seed}) trains on ${train.length} and holds out ${test.length}\n`);
    stderr.write(`${describeData(prepared.summary, o.seq)}\n`);
    if (!prepared.examples.length) throw new LoraError('E_DATA', `${o.data}: no training example has a label token left at --seq ${o.seq}${o.responseOnly ? ' with --response-only' : ''}`);
    const evalExamples = o.evalSteps ? prepareExamples(tok, test, { seq: o.seq, responseOnly: o.responseOnly }).examples : undefined;
    if (o.evalSteps && !evalExamples?.length) throw new UsageError(`--eval-steps: the ${test.length} held-out records give no example with a label token`);

    const progress = new TrainProgress(stderr as NodeJS.WriteStream, o.progressSeconds);
    if (comm && writer) stderr.write(`data-parallel: ${comm.size} ranks (${comm.library}), batch ${o.batch} per rank\n`);
    const model = await AutoModelForCausalLM.fromPretrained(o.model, { device: o.device, dtype: o.dtype, onProgress: (e) => progress.load(e) });
    try {
      checkSeq(model.config.maxPositionEmbeddings);
      model.addLora({ r: o.r, alpha: o.alpha, dropout: o.dropout, targetModules: o.targets, useRslora: o.rslora, seed: o.seed });
      const ac = new AbortController();
      let interrupts = 0;
      const onSigint = () => {
        interrupts++;
        if (interrupts > 1) {
          process.stderr.write('\nlora train: interrupted again, exiting now (the last checkpoint is kept)\n');
          process.exit(130);
        }
        progress.line('lora train: interrupted — finishing the current step and writing a checkpoint (Ctrl-C again to quit at once)');
        ac.abort();
      };
      process.on('SIGINT', onSigint);
      let result;
      try {
        const trainer = new Trainer(model, {
          examples: prepared.examples, batchSize: o.batch, gradAccum: o.gradAccum, seq: o.seq,
          maxSteps: o.steps, epochs: o.epochs, lr: o.lr, schedule: o.schedule, warmupSteps: o.warmup, warmupRatio: o.warmupRatio,
          weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, loggingSteps: o.loggingSteps, packing: o.packing, seed: o.seed,
          checkpointDir: out.checkpoints, saveSteps: o.saveSteps, saveTotalLimit: o.saveTotalLimit, resumeFrom: o.resume ? 'latest' : undefined,
          evalExamples, evalSteps: o.evalSteps, loadBestModelAtEnd: o.loadBestModelAtEnd,
          outputDir: o.out, reportTo: o.reportTo === 'tensorboard' ? ['tensorboard'] : [], settings: { responseOnly: o.responseOnly },
          activationCheckpointing: o.checkpointing, signal: ac.signal, distributed: comm,
          onEvent: (e) => progress.event(e),
        });
        const ranks = comm ? ` × ${comm.size} ranks` : '';
        stderr.write(`  ${trainer.stepsPerEpoch} steps per epoch (batch ${o.batch}${ranks} × grad-accum ${o.gradAccum}); ${trainer.totalSteps} steps in all\n`);
        if (writer) await writeTrainingArgs(o.out, {
          data: { path: existsSync(o.data) ? resolve(o.data) : o.data /* a hub dataset id stays an id */, sha256: dataSha, records: records.length },
          split: o.split, seed: o.seed, model: o.model,
          train_records: train.length, eval_records: test.length, examples: prepared.summary,
          lora: { r: o.r, alpha: o.alpha, dropout: o.dropout, targets: o.targets, rslora: o.rslora },
          max_steps: trainer.totalSteps, epochs: o.epochs ?? null, batch: o.batch, grad_accum: o.gradAccum, seq: o.seq, lr: o.lr, schedule: o.schedule,
          warmup_steps: trainer.warmupSteps, weight_decay: o.weightDecay, max_grad_norm: o.maxGradNorm, adam_beta1: 0.9, adam_beta2: 0.999, adam_epsilon: 1e-8,
          response_only: o.responseOnly, packing: o.packing, dtype: o.dtype, device: o.device, activation_checkpointing: o.checkpointing,
          logging_steps: o.loggingSteps, save_steps: o.saveSteps, save_total_limit: o.saveTotalLimit ?? null, eval_steps: o.evalSteps ?? null,
          load_best_model_at_end: o.loadBestModelAtEnd, report_to: o.reportTo, version: await packageVersion(), world_size: comm?.size ?? 1,
        });
        result = await trainer.train();
      } finally {
        process.off('SIGINT', onSigint);
      }
      if (result.reason === 'nan') {
        progress.line(`lora train: ${result.message}`);
        return 1;
      }
      if (result.reason === 'aborted') {
        const again = o.argv.includes('--resume') ? o.argv : [...o.argv, '--resume'];
        progress.line(result.lastCheckpoint
          ? `lora train: stopped at step ${result.steps}; checkpoint ${result.lastCheckpoint}\n  continue with: lora train ${again.join(' ')}`
          : `lora train: stopped at step ${result.steps} before any step finished; nothing to resume`);
        return 130;
      }
      if (!writer) return 0;
      await model.saveAdapter(o.out);
      progress.line(`finished: ${result.steps} steps, mean loss ${result.metrics.train_loss.toFixed(4)}; adapter written to ${o.out}`);
      process.stdout.write(`${formatMetrics('train', result.metrics)}\n`);
      // Like run_clm.py after trainer.evaluate(): the last held-out loss and its perplexity, also in eval_results.json.
      const lastEval = result.state.log_history.filter((h) => h.eval_loss !== undefined).at(-1);
      if (lastEval) {
        const evalMetrics = { epoch: lastEval.epoch, eval_loss: lastEval.eval_loss!, perplexity: Math.exp(lastEval.eval_loss!), eval_samples: evalExamples!.length, eval_runtime: lastEval.eval_runtime! };
        await writeFileAtomic(join(o.out, 'eval_results.json'), [new TextEncoder().encode(`${JSON.stringify(evalMetrics, null, 2)}\n`)]);
        process.stdout.write(`${formatMetrics('eval', evalMetrics)}\n`);
      }
      return 0;
    } finally {
      model.dispose();
    }
  } finally {
    out.release();
  }
}

async function packageVersion(): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
    return `${pkg.name}@${pkg.version}`;
  } catch {
    return 'unknown';
  }
}
