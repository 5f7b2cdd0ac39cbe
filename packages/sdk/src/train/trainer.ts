// The training loop: AdamW on the LoRA parameters (HF defaults), linear/cosine schedules with
// warmup, gradient accumulation, global-norm clipping, NaN/Inf detection, held-out evaluation,
// atomic verified checkpoints with resume that continues the same loss curve, AbortSignal
// cancellation. Everything random (data order, dropout masks) derives from `seed` and the step, so
// a run is reproducible on one backend and a resumed run replays exactly what the uninterrupted one
// would have done.
//
// Responsiveness: every model step is a synchronous native call, so the loop yields to the event
// loop after each micro-batch (and each eval batch); timers, I/O, signals and an AbortSignal get
// their turn at least once per optimizer step. A setImmediate yield measured 15 µs (10,000 yields
// in 146 ms on the shared 2-core dev machine), against ~7 ms for the test fixture's optimizer step
// of two micro-batches: 0.4 % there, and nothing measurable on a real model's 100 ms+ steps.
//
// Abort convention (HF's: a stop request ends training gracefully): when `signal` aborts, the
// current optimizer step finishes, a checkpoint is written (when checkpointDir is set), and
// train() resolves with reason 'aborted'; it does not reject.
//
// Data-parallel (`distributed`, see distributed.ts): batchSize is per rank; every rank cuts the
// same global batches of batchSize × size rows and trains on its slice. Each rank scales its slice's
// grads by its share of the global batch's loss tokens, so the summed grads are the gradient of
// the global batch's token-mean loss — what one process with the whole batch computes. Grads, loss
// and token counts are summed after the micro-batches (one collective for the grads, one for the
// counts), before clipping and AdamW. A stop request on any rank reaches all of them through that
// sum, so every rank stops after the same step. Only rank 0 writes checkpoints and run records;
// every rank checks the same weights and agrees before going on.
import { join } from 'node:path';

import { native, type NativeTensor } from '@lora/core-native';

import { makeBatches, type Batch, type Example } from '../data/batches.js';
import { TRAINING_DEFAULTS as D } from '../defaults/training-defaults.js';
import { isLoraError, LoraError } from '../io/errors.js';
import type { RawTensor } from '../io/tensor.js';
import { adapterTensors, loadAdapterWeights } from '../model/adapter-io.js';
import type { LoraModule } from '../model/lora.js';
import type { CausalLM } from '../models/causal-lm.js';
import {
  listCheckpoints, nonFinite, pruneCheckpoints, readOptimizerState, readVerifiedState, removeStaleTemps, writeCheckpoint, type TrainerState,
} from './checkpoint.js';
import type { TrainEvent, TrainEventListener, TrainMetrics } from './events.js';
import { assertSameRunOnEveryRank, shardBatch, type DistributedComm } from './distributed.js';
import { assertSameSettings, examplesHash, modelIdentity } from './fingerprint.js';
import { emptyHfState, type HfTrainerState } from './hf-state.js';
import { RunRecorder, type ReportTo } from './records.js';
import { learningRate, type ScheduleKind } from './schedule.js';

export interface TrainerOptions {
  /** Tokenized examples; batches are cut from them per epoch, shuffled by seed + epoch. */
  examples: Example[];
  batchSize: number;
  seq: number;
  padding?: 'longest' | 'max_length';
  packing?: boolean;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Stop after this many optimizer steps; like HF's max_steps it overrides `epochs`. */
  maxSteps?: number;
  epochs?: number;
  /** Peak learning rate (default 2e-4, TRAINING_DEFAULTS.lr: the usual LoRA rate; HF Trainer's 5e-5 is for full fine-tuning). */
  lr?: number;
  /** Decay after warmup (default 'linear'). */
  schedule?: ScheduleKind;
  warmupSteps?: number;
  /** Used when warmupSteps is not given: a fraction of the total steps. */
  warmupRatio?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Global grad-norm clip (HF default 1.0; 0 disables). */
  maxGradNorm?: number;
  /** Seed of the data order and the dropout masks (default 42). */
  seed?: number;
  /** Mean loss is reported every loggingSteps steps as a 'log' event (default 10). */
  loggingSteps?: number;
  checkpointDir?: string;
  /** Write a checkpoint every saveSteps steps (and at the end, and on abort) when checkpointDir is set (default 100). */
  saveSteps?: number;
  /** Keep at most this many checkpoints (the best one is never deleted), like HF's save_total_limit. */
  saveTotalLimit?: number;
  /**
   * 'latest' resumes from the newest complete checkpoint in checkpointDir (a damaged newest one
   * falls back to the previous, with a 'warning' event); a path resumes from that folder. Nothing to
   * resume from is an E_RESUME error.
   */
  resumeFrom?: 'latest' | string;
  /** Held-out examples for evaluation (eval_loss, perplexity). */
  evalExamples?: Example[];
  /** Evaluate every evalSteps steps (and at the last step). */
  evalSteps?: number;
  evalBatchSize?: number;
  /** At the end, load the adapter of the checkpoint with the lowest eval_loss (needs saveSteps to be a multiple of evalSteps). */
  loadBestModelAtEnd?: boolean;
  /** Where the run's record goes: trainer_log.jsonl, trainer_state.json, train_results.json, runs/ (TensorBoard). */
  outputDir?: string;
  reportTo?: readonly ReportTo[];
  /** More settings that change the run (e.g. { responseOnly: true }), checked on resume with the rest. */
  settings?: Record<string, unknown>;
  activationCheckpointing?: boolean;
  /** Data-parallel training over this communicator (batchSize is per rank); see the header. */
  distributed?: DistributedComm;
  signal?: AbortSignal;
  onEvent?: TrainEventListener;
}

export interface TrainResult {
  steps: number;
  lossHistory: number[];
  reason: 'finished' | 'aborted' | 'nan';
  message?: string;
  lastCheckpoint?: string;
  elapsedMs: number;
  metrics: TrainMetrics;
  /** HF's TrainerState at the end (log_history, best_metric, best_model_checkpoint, ...). */
  state: HfTrainerState;
}

interface Moments {
  module: LoraModule;
  key: string;
  mA: NativeTensor;
  vA: NativeTensor;
  mB: NativeTensor;
  vB: NativeTensor;
}

type Resolved = Required<Omit<TrainerOptions, 'maxSteps' | 'epochs' | 'warmupSteps' | 'checkpointDir' | 'resumeFrom' | 'signal' | 'onEvent' | 'examples' |
  'evalExamples' | 'evalSteps' | 'evalBatchSize' | 'saveTotalLimit' | 'outputDir' | 'reportTo' | 'settings' | 'distributed'>> & TrainerOptions;

/** Lets timers, I/O callbacks and signal handlers run (see the header for its measured cost). */
export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const F32_MAX = 3.4028234663852886e38;

export class Trainer {
  private readonly o: Resolved;
  private moments: Moments[] = [];
  private epochBatches: { epoch: number; batches: Batch[] } | undefined;
  private evalBatches: Batch[] | undefined;
  private recorder: RunRecorder | undefined;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  readonly warmupSteps: number;
  /** This process's rank and the number of ranks (0 and 1 without `distributed`). */
  readonly rank: number;
  readonly worldSize: number;

  constructor(
    readonly model: CausalLM,
    options: TrainerOptions,
  ) {
    if (!model.lora) throw new LoraError('E_CONFIG', 'Trainer: the model has no LoRA adapter (call model.addLora first)');
    this.o = {
      // The documented defaults lora train shares (TRAINING_DEFAULTS); AdamW's betas/eps are HF's.
      padding: 'longest', packing: false, gradAccum: D.gradAccum, lr: D.lr, schedule: D.schedule, warmupRatio: 0, weightDecay: D.weightDecay,
      beta1: 0.9, beta2: 0.999, eps: 1e-8, maxGradNorm: D.maxGradNorm, seed: D.seed, loggingSteps: D.loggingSteps, saveSteps: D.saveSteps, loadBestModelAtEnd: false,
      activationCheckpointing: false,
      ...options,
    };
    validate(this.o);
    this.rank = options.distributed?.rank ?? 0;
    this.worldSize = options.distributed?.size ?? 1;
    const batchesPerEpoch = this.batchesFor(0).length;
    this.stepsPerEpoch = Math.floor(batchesPerEpoch / this.o.gradAccum);
    if (this.stepsPerEpoch < 1) {
      const of = this.worldSize > 1 ? `${this.o.batchSize * this.worldSize} (${this.o.batchSize} per rank × ${this.worldSize} ranks)` : `${this.o.batchSize}`;
      throw new LoraError('E_DATA', `Trainer: ${options.examples.length} examples give ${batchesPerEpoch} batches of ${of}, fewer than gradAccum = ${this.o.gradAccum}`);
    }
    this.totalSteps = this.o.maxSteps ?? this.stepsPerEpoch * (this.o.epochs ?? 1);
    this.warmupSteps = this.o.warmupSteps ?? Math.ceil(this.totalSteps * this.o.warmupRatio);
  }

  private batchesFor(epoch: number): Batch[] {
    if (this.epochBatches?.epoch !== epoch) {
      const batches = makeBatches(this.o.examples, {
        batchSize: this.o.batchSize * this.worldSize, seq: this.o.seq, padding: this.o.padding, packing: this.o.packing,
        seed: this.o.seed, epoch, padId: this.model.config.padTokenId,
      });
      this.epochBatches = { epoch, batches };
    }
    return this.epochBatches.batches;
  }

  /** The global micro-batch `index` counted from the start of training (all ranks' rows). */
  private microBatch(index: number): Batch {
    const perEpoch = this.stepsPerEpoch * this.o.gradAccum;
    return this.batchesFor(Math.floor(index / perEpoch))[index % perEpoch];
  }

  /** Every setting that changes the trajectory (activation checkpointing does not). */
  private async settings(): Promise<Record<string, unknown>> {
    const l = this.model.lora!;
    const o = this.o;
    return {
      model: await modelIdentity(this.model.config, this.model.weights), dtype: this.model.weights.dtype,
      r: l.r, alpha: l.alpha, dropout: l.dropout, targets: [...l.targets], rslora: l.useRslora,
      examples: examplesHash(o.examples), batchSize: o.batchSize, gradAccum: o.gradAccum, seq: o.seq, padding: o.padding, packing: o.packing,
      lr: o.lr, schedule: o.schedule, warmupSteps: this.warmupSteps, weightDecay: o.weightDecay, beta1: o.beta1, beta2: o.beta2, eps: o.eps,
      maxGradNorm: o.maxGradNorm, seed: o.seed, maxSteps: this.totalSteps, ...(this.worldSize > 1 ? { worldSize: this.worldSize } : {}), ...o.settings,
    };
  }

  private initMoments(): void {
    const { Tensor } = native();
    const dev = this.model.device.memory;
    const zeros = (t: NativeTensor) => Tensor.fromArray(new Float32Array(t.numel), t.shape, 'f32', dev);
    // Every LoRA module the family's table made (OPT: layers.i.qkv/out_proj/fc1/fc2, the same keys as
    // before; llama-shaped: its own), so a family's modules all get AdamW state.
    this.moments = this.model.lora!.namedModules().map(({ key, module: m }) => ({
      module: m, key, mA: zeros(m.a), vA: zeros(m.a), mB: zeros(m.b), vB: zeros(m.b),
    }));
  }

  private optimizerState(): Map<string, RawTensor> {
    const out = new Map<string, RawTensor>();
    for (const m of this.moments) {
      for (const [name, t] of [['a.m', m.mA], ['a.v', m.vA], ['b.m', m.mB], ['b.v', m.vB]] as const) {
        out.set(`${m.key}.${name}`, { dtype: 'F32', shape: t.shape, data: t.toArray() as Float32Array });
      }
    }
    return out;
  }

  /** The checkpoint to resume from, verified; 'latest' falls back past damaged ones. */
  private async findCheckpoint(): Promise<{ path: string; state: TrainerState }> {
    const o = this.o;
    if (o.resumeFrom !== 'latest') {
      const path = o.resumeFrom!;
      return { path, state: await readVerifiedState(path) };
    }
    const all = await listCheckpoints(o.checkpointDir!);
    if (!all.length) throw new LoraError('E_RESUME', `nothing to resume: ${o.checkpointDir} holds no checkpoint-<step> folder`);
    for (const [i, c] of all.entries()) {
      try {
        return { path: c.path, state: await readVerifiedState(c.path) };
      } catch (e) {
        if (!isLoraError(e, 'E_CHECKPOINT') && !isLoraError(e, 'E_FILE_NOT_FOUND')) throw e;
        const next = all[i + 1];
        this.emit({ type: 'warning', message: `${c.path} is damaged (${(e as Error).message}); ${next ? `falling back to ${next.path}` : 'no older checkpoint to fall back to'}` });
      }
    }
    throw new LoraError('E_CHECKPOINT', `nothing to resume: all ${all.length} checkpoints in ${o.checkpointDir} are damaged`);
  }

  private async restore(path: string, state: TrainerState, settings: Record<string, unknown>): Promise<void> {
    assertSameSettings(path, state.lora_trainer.settings, settings);
    await loadAdapterWeights(this.model.lora!, path, this.model.config);
    const opt = await readOptimizerState(path);
    for (const m of this.moments) {
      for (const [name, t] of [['a.m', m.mA], ['a.v', m.vA], ['b.m', m.mB], ['b.v', m.vB]] as const) {
        const raw = opt.get(`${m.key}.${name}`);
        if (!raw || raw.data.length !== t.numel) throw new LoraError('E_CHECKPOINT', `${path}: optimizer state ${m.key}.${name} is missing or has the wrong size`);
        t.copyFrom(raw.data as Float32Array);
      }
    }
  }

  /**
   * Rank 0 writes (write()); the other ranks check the same weights for non-finite values, so all
   * reach the same verdict; then the ranks agree, so a failed write on rank 0 stops every rank
   * instead of leaving them waiting. Returns the checkpoint's path (the same on every rank).
   */
  private async saveOnRankZero(write: () => Promise<string>, adapter: Map<string, RawTensor>, step: number): Promise<string> {
    const comm = this.o.distributed;
    if (!comm) return write();
    let failure: unknown;
    let path = join(this.o.checkpointDir!, `checkpoint-${step}`);
    try {
      if (this.rank === 0) path = await write();
      else {
        const bad = nonFinite(new Map([...adapter, ...this.optimizerState()]));
        if (bad.length) throw new LoraError('E_CHECKPOINT', `checkpoint-${step}: ${bad.reduce((a, b) => a + b.count, 0)} values are not finite; not written`);
      }
    } catch (e) {
      failure = e;
    }
    const failed = new Float64Array([failure ? 1 : 0]);
    await comm.allreduceSum(failed);
    if (failure) throw failure;
    if (failed[0] > 0) throw new LoraError('E_DIST', `rank 0 could not write checkpoint-${step} (its own message says why); stopping`);
    return path;
  }

  private emit(e: TrainEvent): void {
    this.recorder?.onEvent(e);
    this.o.onEvent?.(e);
  }

  /** Token-weighted mean loss over the eval examples (dropout off), yielding between batches. */
  private async evaluate(): Promise<{ loss: number; samples: number; runtimeMs: number }> {
    const o = this.o;
    this.evalBatches ??= makeBatches(o.evalExamples!, {
      batchSize: o.evalBatchSize ?? o.batchSize, seq: o.seq, padding: o.padding, padId: this.model.config.padTokenId, keepLast: true,
    });
    const t0 = performance.now();
    let sum = 0;
    let count = 0;
    // Data-parallel: rank r evaluates batches r, r + size, ...; the sums are added over ranks.
    for (const [i, b] of this.evalBatches.entries()) {
      if (i % this.worldSize !== this.rank) continue;
      const r = this.model.step(b, { training: false });
      sum += r.lossSum;
      count += r.count;
      await yieldToEventLoop();
    }
    if (o.distributed) {
      const totals = new Float64Array([sum, count]);
      await o.distributed.allreduceSum(totals);
      [sum, count] = totals;
    }
    return { loss: count ? sum / count : Number.NaN, samples: o.evalExamples!.length, runtimeMs: performance.now() - t0 };
  }

  async train(): Promise<TrainResult> {
    const model = this.model;
    const lora = model.lora!;
    const k = model.kernels;
    const o = this.o;
    const t0 = performance.now();
    this.initMoments();
    let step = 0;
    let lossHistory: number[] = [];
    let lastCheckpoint: string | undefined;
    let lastCheckpointStep = -1;
    const epochs = this.totalSteps / this.stepsPerEpoch;
    let state = emptyHfState({ maxSteps: this.totalSteps, epochs: Math.ceil(epochs), loggingSteps: o.loggingSteps, saveSteps: o.saveSteps, evalSteps: o.evalSteps, batchSize: o.batchSize });
    let bestEvalStep = -1;
    let bestEval = Number.POSITIVE_INFINITY;
    const comm = o.distributed;
    const writer = this.rank === 0;
    let stopRequested = false;
    try {
      let settings: Record<string, unknown> | undefined;
      if (o.checkpointDir) {
        if (writer) for (const n of await removeStaleTemps(o.checkpointDir)) this.emit({ type: 'warning', message: `removed ${n} left by a run that died while writing a checkpoint` });
        settings = await this.settings();
      }
      if (o.resumeFrom) {
        const found = await this.findCheckpoint();
        await this.restore(found.path, found.state, settings ?? (await this.settings()));
        const { lora_trainer: saved, ...hf } = found.state;
        step = found.state.global_step;
        lossHistory = saved.loss_history.slice(0, step);
        // What the run so far produced carries over; the settings-derived fields stay this run's.
        state = {
          ...state, log_history: hf.log_history.filter((h) => h.step <= step), best_metric: hf.best_metric, best_global_step: hf.best_global_step ?? null,
          best_model_checkpoint: hf.best_model_checkpoint, num_input_tokens_seen: hf.num_input_tokens_seen ?? 0, global_step: step, epoch: hf.epoch,
        };
        bestEval = state.best_metric ?? Number.POSITIVE_INFINITY;
        bestEvalStep = state.best_global_step ?? -1;
        lastCheckpoint = found.path;
        lastCheckpointStep = step;
      }
      // Every rank must run the same trajectory from the same point, or the summed grads mean nothing.
      if (comm) await assertSameRunOnEveryRank(comm, { ...(settings ?? (await this.settings())), resumeStep: step, worldSize: this.worldSize });
      if (o.outputDir && writer) this.recorder = new RunRecorder(o.outputDir, { reportTo: o.reportTo, startStep: step });
      const startStep = step;
      const schedule = { kind: o.schedule, lr: o.lr, warmupSteps: this.warmupSteps, totalSteps: this.totalSteps };
      const trainable = lora.trainableParameters();
      this.emit({
        type: 'start', totalSteps: this.totalSteps, startStep: step, stepsPerEpoch: this.stepsPerEpoch, epochs,
        trainableParams: trainable, allParams: model.baseParameters() + trainable, backend: model.device.backend,
      });
      let smoothed = 0;
      for (const l of lossHistory) smoothed = ema(smoothed, l);
      let sessionTokens = 0;
      const epochAt = (s: number) => s / this.stepsPerEpoch;

      const checkpoint = async (): Promise<string | undefined> => {
        const adapter = adapterTensors(lora);
        const full: TrainerState = { ...state, lora_trainer: { seed: o.seed, loss_history: lossHistory, settings: settings!, files: {} } };
        const bestHere = bestEvalStep === step;
        if (bestHere) full.best_model_checkpoint = join(o.checkpointDir!, `checkpoint-${step}`);
        const path = await this.saveOnRankZero(() => writeCheckpoint(o.checkpointDir!, lora, adapter, this.optimizerState(), full, model.source ?? null), adapter, step);
        if (bestHere) state.best_model_checkpoint = path;
        lastCheckpoint = path;
        lastCheckpointStep = step;
        this.emit({ type: 'checkpoint', step, path });
        if (o.saveTotalLimit && writer) {
          for (const gone of await pruneCheckpoints(o.checkpointDir!, o.saveTotalLimit, state.best_model_checkpoint ?? undefined)) {
            if (gone === lastCheckpoint) lastCheckpoint = undefined;
          }
        }
        return path;
      };

      const finish = async (reason: TrainResult['reason'], message?: string): Promise<TrainResult> => {
        const elapsedMs = performance.now() - t0;
        const sessionSteps = step - startStep;
        const metrics: TrainMetrics = {
          epoch: round4(epochAt(step)),
          train_loss: lossHistory.length ? lossHistory.reduce((a, b) => a + b, 0) / lossHistory.length : Number.NaN,
          train_runtime: elapsedMs / 1000,
          train_samples_per_second: (sessionSteps * o.batchSize * this.worldSize * o.gradAccum) / (elapsedMs / 1000),
          train_steps_per_second: sessionSteps / (elapsedMs / 1000),
          train_tokens_per_second: sessionTokens / (elapsedMs / 1000),
          total_flos: 0,
        };
        state.global_step = step;
        state.epoch = round4(epochAt(step));
        state.log_history.push({ epoch: metrics.epoch, step, total_flos: 0, train_loss: metrics.train_loss, train_runtime: round4(metrics.train_runtime), train_samples_per_second: round4(metrics.train_samples_per_second), train_steps_per_second: round4(metrics.train_steps_per_second) });
        const done = { type: 'done' as const, step, reason, elapsedMs, metrics, state };
        this.emit(done);
        await this.recorder?.finish(done);
        return { steps: step, lossHistory, reason, message, lastCheckpoint, elapsedMs, metrics, state };
      };

      const stopNonFinite = (what: string, cause: string, at = step + 1) => {
        const message = `step ${at}: ${what}; ${cause}` + (lastCheckpoint ? `; the last good checkpoint is ${lastCheckpoint}` : '');
        this.emit({ type: 'nan', step: at, message, lastCheckpoint });
        return finish('nan', message);
      };

      while (step < this.totalSteps) {
        if (comm ? stopRequested : o.signal?.aborted) {
          if (o.checkpointDir && step > lastCheckpointStep && step > 0) {
            try {
              await checkpoint();
            } catch (e) {
              if (!isLoraError(e, 'E_CHECKPOINT')) throw e;
              return stopNonFinite(`the update made the LoRA weights or optimizer moments non-finite (${(e as Error).message})`, likelyCause(o, model.weights.dtype, 1), step);
            }
          }
          return finish('aborted', 'aborted by signal');
        }
        const s0 = performance.now();
        lora.zeroGrad(k);
        let loss = 0;
        let tokens = 0;
        let lossTokens = 0;
        for (let micro = 0; micro < o.gradAccum; micro++) {
          const index = step * o.gradAccum + micro;
          const global = this.microBatch(index);
          const batch = comm ? shardBatch(global, this.rank, this.worldSize) : global;
          // This rank's share of the global batch's loss tokens (1 in one process).
          const share = comm && global.lossTokens > 0 ? batch.lossTokens / global.lossTokens : 1;
          if (share > 0) {
            const r = model.step(batch, {
              training: true, backward: true, gradScale: share / o.gradAccum, seed: dropoutSeed(o.seed, index, this.rank),
              checkpointing: o.activationCheckpointing,
            });
            loss += (comm && global.lossTokens > 0 ? r.lossSum / global.lossTokens : r.loss) / o.gradAccum;
          }
          tokens += batch.tokens;
          lossTokens += batch.lossTokens;
          await yieldToEventLoop();
        }
        let commMs: number | undefined;
        if (comm) {
          const c0 = performance.now();
          await comm.allreduceSum(lora.modules().flatMap((m) => [m.da, m.db]));
          const totals = new Float64Array([loss, tokens, lossTokens, o.signal?.aborted ? 1 : 0]);
          await comm.allreduceSum(totals);
          [loss, tokens, lossTokens] = totals;
          stopRequested = totals[3] > 0;
          commMs = performance.now() - c0;
        }
        lora.maskUntrainedGrads(k);
        let sq = 0;
        for (const m of lora.modules()) sq += k.sumSquares(m.da) + k.sumSquares(m.db);
        const gradNorm = Math.sqrt(sq);
        if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
          const what = `${!Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${gradNorm}`}; stopped without applying the update`;
          return stopNonFinite(what, likelyCause(o, model.weights.dtype, lossTokens));
        }
        const clip = o.maxGradNorm > 0 && gradNorm > o.maxGradNorm ? o.maxGradNorm / (gradNorm + 1e-6) : 1;
        const lr = learningRate(schedule, step);
        for (const m of this.moments) {
          const common = { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, gradScale: clip, step: step + 1 };
          k.adamw(m.module.a, m.module.da, m.mA, m.vA, common);
          k.adamw(m.module.b, m.module.db, m.mB, m.vB, common);
        }
        step++;
        lossHistory.push(loss);
        smoothed = ema(smoothed, loss);
        sessionTokens += tokens;
        state.num_input_tokens_seen += tokens;
        state.global_step = step;
        state.epoch = round4(epochAt(step));
        const dt = performance.now() - s0;
        this.emit({
          type: 'step', step, loss, smoothedLoss: smoothed / (1 - 0.9 ** lossHistory.length), lr, gradNorm, tokens, ...(commMs === undefined ? {} : { commMs }),
          tokensPerSec: tokens / (dt / 1000), elapsedMs: performance.now() - t0, epoch: epochAt(step),
        });
        if (step % o.loggingSteps === 0) {
          const window = lossHistory.slice(-o.loggingSteps);
          const meanLoss = window.reduce((a, b) => a + b, 0) / window.length;
          const entry = { epoch: round4(epochAt(step)), grad_norm: gradNorm, learning_rate: lr, loss: round4(meanLoss), step };
          state.log_history.push(entry);
          this.emit({ type: 'log', round: step / o.loggingSteps, step, meanLoss, entry });
        }
        if (o.evalSteps && (step % o.evalSteps === 0 || step === this.totalSteps)) {
          const ev = await this.evaluate();
          const best = ev.loss < bestEval;
          if (best) {
            bestEval = ev.loss;
            bestEvalStep = step;
            state.best_metric = ev.loss;
            state.best_global_step = step;
          }
          const sec = ev.runtimeMs / 1000;
          state.log_history.push({ epoch: round4(epochAt(step)), eval_loss: ev.loss, eval_perplexity: Math.exp(ev.loss), eval_runtime: round4(sec), eval_samples_per_second: round4(ev.samples / sec), eval_steps_per_second: round4((this.evalBatches?.length ?? 0) / sec), step });
          this.emit({ type: 'eval', step, epoch: epochAt(step), loss: ev.loss, perplexity: Math.exp(ev.loss), samples: ev.samples, runtimeMs: ev.runtimeMs, best });
        }
        if (o.checkpointDir && (step % o.saveSteps === 0 || step === this.totalSteps)) {
          try {
            await checkpoint();
          } catch (e) {
            if (!isLoraError(e, 'E_CHECKPOINT')) throw e;
            return stopNonFinite(`the update made the LoRA weights or optimizer moments non-finite (${(e as Error).message})`, likelyCause(o, model.weights.dtype, lossTokens), step);
          }
        }
      }
      if (!o.checkpointDir) {
        const bad = nonFinite(adapterTensors(lora));
        if (bad.length) return stopNonFinite(`the LoRA weights hold ${bad.reduce((a, b) => a + b.count, 0)} non-finite values after the last update`, likelyCause(o, model.weights.dtype, 1), step);
      }
      if (o.loadBestModelAtEnd && state.best_model_checkpoint) {
        await loadAdapterWeights(lora, state.best_model_checkpoint, model.config);
        this.emit({ type: 'best', step: bestEvalStep, path: state.best_model_checkpoint, metric: bestEval });
      }
      return await finish('finished');
    } finally {
      this.recorder?.close();
      for (const m of this.moments) for (const t of [m.mA, m.vA, m.mB, m.vB]) t.dispose();
      this.moments = [];
    }
  }
}

/** Bias-uncorrected EMA accumulator (β = 0.9); divide by 1 − 0.9^n to read it. */
function ema(acc: number, loss: number): number {
  return 0.9 * acc + 0.1 * loss;
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4;

/** The likeliest reason a step went non-finite, for the stop message. */
function likelyCause(o: Resolved, dtype: string, lossTokens: number): string {
  if (lossTokens === 0) {
    return 'likely cause: no token of this batch has a label — every label was truncated away or masked (with --response-only, a --seq shorter than the prompts leaves nothing to learn)';
  }
  if (o.lr > 1e-2) return `likely cause: the learning rate ${o.lr} is too high (LoRA usually trains at 1e-4 to 3e-4)`;
  if (dtype === 'f16') return 'likely cause: f16 overflow in the base model; try --dtype bf16 or f32';
  if (o.maxGradNorm === 0) return 'likely cause: unclipped gradients (maxGradNorm 0) with this learning rate; try clipping at 1.0 or a lower lr';
  return `likely cause: the learning rate ${o.lr} is too high for this data, or the data holds extreme values; try a lower lr`;
}

/**
 * A distinct dropout seed per micro-batch (and per rank), below 2^53. A mask depends on the element's
 * index within the rank's slice, so ranks need seeds of their own, or every slice would get the
 * same mask; with dropout on, N ranks × b therefore draw other masks than 1 process × N·b (a fair
 * draw, not the same one). Rank 0's seed is the single-process seed.
 */
function dropoutSeed(seed: number, microIndex: number, rank = 0): number {
  return ((seed >>> 0) * 1_000_003 + microIndex * 7_919 + 1 + rank * 104_729) % 2 ** 52;
}

function validate(o: Resolved): void {
  const posInt = (v: number | undefined, name: string) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new LoraError('E_CONFIG', `Trainer: ${name} must be a positive integer, got ${v}`);
  };
  posInt(o.batchSize, 'batchSize');
  posInt(o.gradAccum, 'gradAccum');
  posInt(o.maxSteps, 'maxSteps');
  posInt(o.epochs, 'epochs');
  posInt(o.loggingSteps, 'loggingSteps');
  posInt(o.saveSteps, 'saveSteps');
  posInt(o.saveTotalLimit, 'saveTotalLimit');
  posInt(o.evalSteps, 'evalSteps');
  posInt(o.evalBatchSize, 'evalBatchSize');
  // The optimizer runs in f32: a value finite in JS but past f32's range (1e39) would be Inf there.
  const f32 = (v: number, name: string, ok: (v: number) => boolean, want: string) => {
    if (!(Number.isFinite(v) && Math.abs(v) <= F32_MAX && ok(v))) throw new LoraError('E_CONFIG', `Trainer: ${name} must be ${want} within f32's range (±3.4e38), got ${v}`);
  };
  f32(o.lr, 'lr', (v) => v > 0, 'a positive number');
  f32(o.weightDecay, 'weightDecay', (v) => v >= 0, 'a number ≥ 0');
  f32(o.beta1, 'beta1', (v) => v >= 0 && v < 1, 'in [0, 1)');
  f32(o.beta2, 'beta2', (v) => v >= 0 && v < 1, 'in [0, 1)');
  f32(o.eps, 'eps', (v) => v > 0, 'a positive number');
  f32(o.maxGradNorm, 'maxGradNorm', (v) => v >= 0, 'a number ≥ 0');
  f32(o.warmupRatio, 'warmupRatio', (v) => v >= 0 && v <= 1, 'in [0, 1]');
  if (o.warmupSteps !== undefined && !(Number.isInteger(o.warmupSteps) && o.warmupSteps >= 0)) throw new LoraError('E_CONFIG', `Trainer: warmupSteps must be an integer ≥ 0, got ${o.warmupSteps}`);
  if (!o.examples.length) throw new LoraError('E_DATA', 'Trainer: no training examples');
  if (o.resumeFrom === 'latest' && !o.checkpointDir) throw new LoraError('E_CONFIG', "Trainer: resumeFrom 'latest' needs checkpointDir");
  if (o.evalSteps && !o.evalExamples?.length) throw new LoraError('E_CONFIG', 'Trainer: evalSteps needs evalExamples (nothing is held out)');
  if (o.loadBestModelAtEnd) {
    if (!o.evalSteps || !o.checkpointDir) throw new LoraError('E_CONFIG', 'Trainer: loadBestModelAtEnd needs evalSteps and checkpointDir');
    if (o.saveSteps % o.evalSteps !== 0) throw new LoraError('E_CONFIG', `Trainer: loadBestModelAtEnd needs saveSteps (${o.saveSteps}) to be a multiple of evalSteps (${o.evalSteps}), so every evaluated step has a checkpoint`);
  }
}
