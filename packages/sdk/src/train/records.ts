// The run's record in its output folder, the way HF's Trainer (and LLaMA-Factory's log) leave it:
//   trainer_log.jsonl   one line per step (and per evaluation), appended as the run goes
//   trainer_state.json  HF's TrainerState at the end (log_history, global_step, best_*, ...)
//   train_results.json  HF's train metrics (train_loss = the run's mean loss, runtime, throughput)
//   runs/<time>_<host>/events.out.tfevents.*  with reportTo 'tensorboard', under HF's tag names
// training_args.json is written by whoever knows the data file and the model source (the CLI).
import { appendFileSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { writeFileAtomic } from '../io/atomic-write.js';
import type { TrainEvent, TrainMetrics } from './events.js';
import { TensorBoardWriter } from './tensorboard.js';

export const TRAINER_LOG = 'trainer_log.jsonl';
export const TRAIN_RESULTS = 'train_results.json';
export const TRAINING_ARGS = 'training_args.json';
export const FINAL_TRAINER_STATE = 'trainer_state.json';

/** training_args.json: every hyperparameter plus what `lora eval` needs to find the held-out records. */
export interface TrainingArgsRecord {
  data: { path: string; sha256: string; records: number };
  /** Train fraction of the seeded split; the complement is held out. */
  split: number;
  seed: number;
  /** The base model's source (folder or hub id). */
  model: string;
  [key: string]: unknown;
}

const json = (v: unknown) => new TextEncoder().encode(`${JSON.stringify(v, null, 2)}\n`);

export async function writeTrainingArgs(dir: string, args: TrainingArgsRecord): Promise<void> {
  await writeFileAtomic(join(dir, TRAINING_ARGS), [json(args)]);
}

export type ReportTo = 'tensorboard';

export class RunRecorder {
  private readonly log: string;
  private tb: TensorBoardWriter | undefined;
  private readonly t0 = performance.now();

  constructor(
    readonly dir: string,
    o: { reportTo?: readonly ReportTo[]; startStep: number },
  ) {
    mkdirSync(dir, { recursive: true });
    this.log = join(dir, TRAINER_LOG);
    // A resumed run replays from its checkpoint: lines past it (a run killed after its last
    // checkpoint) would be written again, so they go.
    let kept = '';
    if (o.startStep > 0) {
      try {
        kept = readFileSync(this.log, 'utf8')
          .split('\n')
          .filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step <= o.startStep)
          .map((l) => `${l}\n`)
          .join('');
      } catch {
        kept = '';
      }
    }
    writeFileSync(this.log, kept);
    if (o.reportTo?.includes('tensorboard')) {
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
      this.tb = new TensorBoardWriter(join(dir, 'runs', `${stamp}_${hostname()}`));
    }
  }

  /** The TensorBoard event file, when one is written. */
  get eventFile(): string | undefined {
    return this.tb?.path;
  }

  onEvent(e: TrainEvent): void {
    if (e.type === 'step') {
      // A line is ~200 bytes; appendFileSync of it costs ~20 µs, well under a step.
      const line = {
        step: e.step, epoch: round(e.epoch), loss: e.loss, smoothed_loss: e.smoothedLoss, lr: e.lr, grad_norm: e.gradNorm,
        tokens_per_sec: Math.round(e.tokensPerSec), elapsed: round(e.elapsedMs / 1000), rss: process.memoryUsage.rss(),
      };
      appendFileSync(this.log, `${JSON.stringify(line)}\n`);
      this.tb?.scalar('train/loss', e.loss, e.step);
      this.tb?.scalar('train/learning_rate', e.lr, e.step);
      this.tb?.scalar('train/grad_norm', e.gradNorm, e.step);
      this.tb?.scalar('train/epoch', e.epoch, e.step);
    } else if (e.type === 'eval') {
      appendFileSync(this.log, `${JSON.stringify({ step: e.step, epoch: round(e.epoch), eval_loss: e.loss, eval_perplexity: e.perplexity, elapsed: round((performance.now() - this.t0) / 1000) })}\n`);
      this.tb?.scalar('eval/loss', e.loss, e.step);
      this.tb?.scalar('eval/perplexity', e.perplexity, e.step);
    }
  }

  /** Writes train_results.json and the final trainer_state.json; closes the event file. */
  async finish(e: Extract<TrainEvent, { type: 'done' }>): Promise<void> {
    this.close();
    const fd = openSync(this.log, 'r+');
    fsyncSync(fd);
    closeSync(fd);
    await writeFileAtomic(join(this.dir, TRAIN_RESULTS), [json(e.metrics)]);
    await writeFileAtomic(join(this.dir, FINAL_TRAINER_STATE), [json(e.state)]);
  }

  close(): void {
    this.tb?.close();
    this.tb = undefined;
  }
}

const round = (v: number) => Math.round(v * 1e4) / 1e4;

/** h:mm:ss.ss, as HF prints train_runtime. */
function duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds - 3600 * h - 60 * m;
  return `${h}:${String(m).padStart(2, '0')}:${s.toFixed(2).padStart(5, '0')}`;
}

/** HF's log_metrics: a header and one `  key = value` line per metric, keys sorted and padded. */
export function formatMetrics(split: string, metrics: TrainMetrics | Record<string, number>): string {
  const entries = Object.entries(metrics)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => [k, k.endsWith('_runtime') ? duration(v) : Number.isInteger(v) ? String(v) : Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3 ? v.toExponential(4) : String(Math.round(v * 1e4) / 1e4)] as const);
  const kw = Math.max(...entries.map(([k]) => k.length));
  const vw = Math.max(...entries.map(([, v]) => v.length));
  return [`***** ${split} metrics *****`, ...entries.map(([k, v]) => `  ${k.padEnd(kw)} = ${v.padStart(vw)}`)].join('\n');
}
