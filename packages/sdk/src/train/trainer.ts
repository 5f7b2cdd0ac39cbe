// The training loop: AdamW on the LoRA parameters (HF defaults), linear/cosine schedules with
// warmup, gradient accumulation, global-norm clipping, NaN/Inf detection, atomic checkpoints with
// resume that continues the same loss curve, AbortSignal cancellation. Everything random (data
// order, dropout masks) derives from `seed` and the step, so a run is reproducible on one backend
// and a resumed run replays exactly what the uninterrupted one would have done.
import { native, type NativeTensor } from '@lora/core-native';

import { makeBatches, type Batch, type Example } from '../data/batches.js';
import { LoraError } from '../io/errors.js';
import type { RawTensor } from '../io/tensor.js';
import { loadAdapterWeights } from '../model/adapter-io.js';
import type { LoraModule } from '../model/lora.js';
import type { OptForCausalLM } from '../model/opt.js';
import { latestCheckpoint, readOptimizerState, readTrainerState, writeCheckpoint, type TrainerState } from './checkpoint.js';
import type { TrainEvent, TrainEventListener } from './events.js';
import { learningRate, type ScheduleKind } from './schedule.js';

export interface TrainerOptions {
  /** Tokenized examples; batches are cut from them per epoch, shuffled by seed + epoch. */
  examples: Example[];
  batchSize: number;
  seq: number;
  padding?: 'longest' | 'max_length';
  packing?: boolean;
  gradAccum?: number;
  /** Stop after this many optimizer steps (default: epochs × steps per epoch). */
  maxSteps?: number;
  epochs?: number;
  lr?: number;
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
  seed?: number;
  /** Mean loss is reported every loggingSteps steps as a 'log' event. */
  loggingSteps?: number;
  checkpointDir?: string;
  /** Write a checkpoint every saveSteps steps (and at the end) when checkpointDir is set. */
  saveSteps?: number;
  /** 'latest' resumes from the newest checkpoint in checkpointDir; a path resumes from that folder. */
  resumeFrom?: 'latest' | string;
  activationCheckpointing?: boolean;
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
}

interface Moments {
  module: LoraModule;
  key: string;
  mA: NativeTensor;
  vA: NativeTensor;
  mB: NativeTensor;
  vB: NativeTensor;
}

export class Trainer {
  private readonly o: Required<Omit<TrainerOptions, 'maxSteps' | 'epochs' | 'warmupSteps' | 'checkpointDir' | 'resumeFrom' | 'signal' | 'onEvent' | 'examples'>> &
    TrainerOptions;
  private moments: Moments[] = [];
  private epochBatches: { epoch: number; batches: Batch[] } | undefined;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;

  constructor(
    readonly model: OptForCausalLM,
    options: TrainerOptions,
  ) {
    if (!model.lora) throw new LoraError('E_CONFIG', 'Trainer: the model has no LoRA adapter (call model.addLora first)');
    this.o = {
      padding: 'longest', packing: false, gradAccum: 1, lr: 5e-5, schedule: 'linear', warmupRatio: 0, weightDecay: 0,
      beta1: 0.9, beta2: 0.999, eps: 1e-8, maxGradNorm: 1.0, seed: 42, loggingSteps: 10, saveSteps: 500,
      activationCheckpointing: false,
      ...options,
    };
    validate(this.o);
    const batchesPerEpoch = this.batchesFor(0).length;
    this.stepsPerEpoch = Math.floor(batchesPerEpoch / this.o.gradAccum);
    if (this.stepsPerEpoch < 1) {
      throw new LoraError('E_DATA', `Trainer: ${options.examples.length} examples give ${batchesPerEpoch} batches of ${this.o.batchSize}, fewer than gradAccum = ${this.o.gradAccum}`);
    }
    this.totalSteps = this.o.maxSteps ?? this.stepsPerEpoch * (this.o.epochs ?? 1);
  }

  private batchesFor(epoch: number): Batch[] {
    if (this.epochBatches?.epoch !== epoch) {
      const batches = makeBatches(this.o.examples, {
        batchSize: this.o.batchSize, seq: this.o.seq, padding: this.o.padding, packing: this.o.packing,
        seed: this.o.seed, epoch, padId: this.model.config.padTokenId,
      });
      this.epochBatches = { epoch, batches };
    }
    return this.epochBatches.batches;
  }

  /** Micro-batch `index` counted from the start of training. */
  private microBatch(index: number): { batch: Batch; epoch: number } {
    const perEpoch = this.stepsPerEpoch * this.o.gradAccum;
    const epoch = Math.floor(index / perEpoch);
    return { batch: this.batchesFor(epoch)[index % perEpoch], epoch };
  }

  private fingerprint(): string {
    const l = this.model.lora!;
    return JSON.stringify({
      r: l.r, alpha: l.alpha, targets: l.targets, n: this.o.examples.length, bs: this.o.batchSize, seq: this.o.seq,
      ga: this.o.gradAccum, lr: this.o.lr, sched: this.o.schedule, seed: this.o.seed, total: this.totalSteps,
    });
  }

  private initMoments(): void {
    const { Tensor } = native();
    const dev = this.model.device.memory;
    const zeros = (t: NativeTensor) => Tensor.fromArray(new Float32Array(t.numel), t.shape, 'f32', dev);
    this.moments = this.model.lora!.layers.flatMap((layer, li) =>
      (['qkv', 'out_proj', 'fc1', 'fc2'] as const)
        .filter((n) => layer[n])
        .map((n) => {
          const m = layer[n]!;
          return { module: m, key: `layers.${li}.${n}`, mA: zeros(m.a), vA: zeros(m.a), mB: zeros(m.b), vB: zeros(m.b) };
        }),
    );
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

  private async restore(checkpoint: string): Promise<TrainerState> {
    const state = await readTrainerState(checkpoint);
    if (state.fingerprint !== this.fingerprint()) {
      throw new LoraError('E_CONFIG', `${checkpoint}: this checkpoint was made with different settings (model, LoRA, data or optimizer); refusing to resume`);
    }
    await loadAdapterWeights(this.model.lora!, checkpoint, this.model.config);
    const opt = await readOptimizerState(checkpoint);
    for (const m of this.moments) {
      for (const [name, t] of [['a.m', m.mA], ['a.v', m.vA], ['b.m', m.mB], ['b.v', m.vB]] as const) {
        const raw = opt.get(`${m.key}.${name}`);
        if (!raw || raw.data.length !== t.numel) throw new LoraError('E_CONFIG', `${checkpoint}: optimizer state ${m.key}.${name} is missing or has the wrong size`);
        t.copyFrom(raw.data as Float32Array);
      }
    }
    return state;
  }

  private emit(e: TrainEvent): void {
    this.o.onEvent?.(e);
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
    try {
      if (o.resumeFrom) {
        const from = o.resumeFrom === 'latest' ? (o.checkpointDir ? await latestCheckpoint(o.checkpointDir) : undefined) : o.resumeFrom;
        if (from) {
          const s = await this.restore(from);
          step = s.step;
          lossHistory = s.lossHistory.slice(0, step);
          lastCheckpoint = from;
        } else if (o.resumeFrom !== 'latest') {
          throw new LoraError('E_FILE_NOT_FOUND', `no checkpoint at ${o.resumeFrom}`);
        }
      }
      const warmup = o.warmupSteps ?? Math.ceil(this.totalSteps * o.warmupRatio);
      const schedule = { kind: o.schedule, lr: o.lr, warmupSteps: warmup, totalSteps: this.totalSteps };
      this.emit({ type: 'start', totalSteps: this.totalSteps, startStep: step, trainableParams: lora.trainableParameters(), allParams: model.baseParameters() + lora.trainableParameters(), backend: model.device.backend });
      const finish = (reason: TrainResult['reason'], message?: string): TrainResult => {
        const elapsedMs = performance.now() - t0;
        this.emit({ type: 'done', step, reason, elapsedMs });
        return { steps: step, lossHistory, reason, message, lastCheckpoint, elapsedMs };
      };
      while (step < this.totalSteps) {
        if (o.signal?.aborted) return finish('aborted', 'aborted by signal');
        const s0 = performance.now();
        lora.zeroGrad(k);
        let loss = 0;
        let tokens = 0;
        let epoch = 0;
        for (let micro = 0; micro < o.gradAccum; micro++) {
          const index = step * o.gradAccum + micro;
          const mb = this.microBatch(index);
          epoch = mb.epoch;
          const r = model.step(mb.batch, {
            training: true, backward: true, gradScale: 1 / o.gradAccum, seed: dropoutSeed(o.seed, index),
            checkpointing: o.activationCheckpointing,
          });
          loss += r.loss / o.gradAccum;
          tokens += mb.batch.tokens;
        }
        lora.maskUntrainedGrads(k);
        let sq = 0;
        for (const m of lora.modules()) sq += k.sumSquares(m.da) + k.sumSquares(m.db);
        const gradNorm = Math.sqrt(sq);
        if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
          const message = `step ${step + 1}: ${!Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${gradNorm}`}; stopped without applying the update` +
            (lastCheckpoint ? `; the last good checkpoint is ${lastCheckpoint}` : '');
          this.emit({ type: 'nan', step: step + 1, message, lastCheckpoint });
          return finish('nan', message);
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
        const dt = performance.now() - s0;
        this.emit({ type: 'step', step, loss, lr, gradNorm, tokens, tokensPerSec: tokens / (dt / 1000), elapsedMs: performance.now() - t0, epoch });
        if (step % o.loggingSteps === 0) {
          const window = lossHistory.slice(-o.loggingSteps);
          this.emit({ type: 'log', round: step / o.loggingSteps, step, meanLoss: window.reduce((a, b) => a + b, 0) / window.length });
        }
        if (o.checkpointDir && (step % o.saveSteps === 0 || step === this.totalSteps)) {
          lastCheckpoint = await writeCheckpoint(o.checkpointDir, lora, this.optimizerState(), { step, seed: o.seed, lossHistory, fingerprint: this.fingerprint() }, model.source ?? null);
          this.emit({ type: 'checkpoint', step, path: lastCheckpoint });
        }
      }
      return finish('finished');
    } finally {
      for (const m of this.moments) for (const t of [m.mA, m.vA, m.mB, m.vB]) t.dispose();
      this.moments = [];
    }
  }
}

/** A distinct dropout seed per micro-batch, below 2^53. */
function dropoutSeed(seed: number, microIndex: number): number {
  return ((seed >>> 0) * 1_000_003 + microIndex * 7_919 + 1) % 2 ** 52;
}

function validate(o: TrainerOptions & { gradAccum: number; lr: number; batchSize: number }): void {
  const posInt = (v: number | undefined, name: string) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new LoraError('E_CONFIG', `Trainer: ${name} must be a positive integer, got ${v}`);
  };
  posInt(o.batchSize, 'batchSize');
  posInt(o.gradAccum, 'gradAccum');
  posInt(o.maxSteps, 'maxSteps');
  posInt(o.epochs, 'epochs');
  posInt(o.loggingSteps, 'loggingSteps');
  posInt(o.saveSteps, 'saveSteps');
  if (!(o.lr > 0 && Number.isFinite(o.lr))) throw new LoraError('E_CONFIG', `Trainer: lr must be a positive number, got ${o.lr}`);
  if (!o.examples.length) throw new LoraError('E_DATA', 'Trainer: no training examples');
  if (o.resumeFrom === 'latest' && !o.checkpointDir) throw new LoraError('E_CONFIG', "Trainer: resumeFrom 'latest' needs checkpointDir");
}
