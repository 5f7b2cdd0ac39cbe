// `lora train`'s progress: PEFT's trainable-parameter line at the start, then on a terminal one
// redrawn bar (step, epoch, smoothed loss, lr, tok/s, elapsed, ETA), off a terminal one plain line
// every N seconds (CI logs stay short); evaluations, checkpoints and warnings each get a line.
// Model downloads and loading report through the SDK's onProgress the same way.
import type { LoadProgressEvent, TrainEvent } from '@lora/sdk';

function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const two = (n: number) => String(n).padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(s % 60)}` : `${two(m)}:${two(s % 60)}`;
}

export class TrainProgress {
  private readonly tty: boolean;
  private total = 0;
  private startStep = 0;
  private lastPlain = -Infinity;
  private drawn = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly everySeconds: number,
  ) {
    this.tty = out.isTTY === true;
  }

  line(text: string): void {
    this.out.write(this.tty && this.drawn ? `\r\x1b[2K${text}\n` : `${text}\n`);
    this.drawn = false;
  }

  private lastLoad = -Infinity;
  private loadStart = 0;

  /** Hub download and weight loading (the SDK's LoadOptions.onProgress). */
  load(e: LoadProgressEvent): void {
    const now = performance.now();
    if (!this.loadStart) this.loadStart = now;
    const due = this.tty || now - this.lastLoad >= this.everySeconds * 1000;
    const redraw = (text: string) => {
      if (this.tty) {
        this.out.write(`\r\x1b[2K${text}`);
        this.drawn = true;
      } else if (due) {
        this.lastLoad = now;
        this.line(text);
      }
    };
    if (e.type === 'resolve') {
      const h = e.event;
      if (h.type === 'file-start') this.line(`downloading ${h.repo}: ${h.file} (${h.index + 1}/${h.count})`);
      if (h.type === 'file-progress') redraw(`  ${h.file}: ${(h.loaded / 2 ** 20).toFixed(1)}${h.total ? ` of ${(h.total / 2 ** 20).toFixed(1)}` : ''} MiB`);
      if (h.type === 'cache-hit') this.line(`model ${h.repo} from the cache (${h.dir})`);
    } else if (e.type === 'weights') {
      redraw(`loading weights: ${e.index + 1}/${e.total} ${e.name}`);
    } else if (e.type === 'ready') {
      this.line(`model loaded in ${((now - this.loadStart) / 1000).toFixed(1)} s: ${e.parameters.toLocaleString('en-US')} parameters, ${e.dtype} on ${e.device.backend}`);
    }
  }

  event(e: TrainEvent): void {
    switch (e.type) {
      case 'start': {
        this.total = e.totalSteps;
        this.startStep = e.startStep;
        // PEFT's print_trainable_parameters line, digit for digit.
        this.line(`trainable params: ${e.trainableParams.toLocaleString('en-US')} || all params: ${e.allParams.toLocaleString('en-US')} || trainable%: ${((100 * e.trainableParams) / e.allParams).toFixed(4)}`);
        this.line(`training on ${e.backend}: ${e.totalSteps} steps (${e.epochs.toFixed(2)} epochs)${e.startStep ? `, resuming at step ${e.startStep}` : ''}`);
        break;
      }
      case 'step': {
        const done = e.step - this.startStep;
        const eta = done > 0 ? (e.elapsedMs / done) * (this.total - e.step) : 0;
        const stats = `epoch ${e.epoch.toFixed(2)}  loss ${e.loss.toFixed(4)} (smoothed ${e.smoothedLoss.toFixed(4)})  lr ${e.lr.toExponential(2)}  ${e.tokensPerSec.toFixed(0)} tok/s  ${clock(e.elapsedMs)} elapsed, ETA ${clock(eta)}`;
        if (this.tty) {
          const width = 20;
          const filled = Math.round((width * e.step) / Math.max(1, this.total));
          this.out.write(`\r\x1b[2K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${e.step}/${this.total}  ${stats}`);
          this.drawn = true;
        } else if (e.step === this.total || e.elapsedMs - this.lastPlain >= this.everySeconds * 1000 || e.step === this.startStep + 1) {
          this.lastPlain = e.elapsedMs;
          this.line(`step ${e.step}/${this.total}  ${stats}`);
        }
        break;
      }
      case 'eval':
        this.line(`step ${e.step}: eval_loss ${e.loss.toFixed(4)}, perplexity ${e.perplexity.toFixed(2)} on ${e.samples} held-out examples${e.best ? ' (best so far)' : ''}`);
        break;
      case 'checkpoint':
        if (!this.tty) this.line(`step ${e.step}: checkpoint ${e.path}`);
        break;
      case 'best':
        this.line(`loaded the best model: ${e.path} (eval_loss ${e.metric.toFixed(4)} at step ${e.step})`);
        break;
      case 'warning':
        this.line(`warning: ${e.message}`);
        break;
      case 'nan':
        this.line(`! ${e.message}`);
        break;
      default:
        break;
    }
  }
}
