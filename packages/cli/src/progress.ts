// A live progress bar per run on a TTY (one line, redrawn), plain lines otherwise (CI logs).
export class Progress {
  private label = '';
  private total = 0;
  private lastPlain = 0;
  private readonly tty: boolean;

  constructor(private readonly out: NodeJS.WriteStream) {
    this.tty = out.isTTY === true;
  }

  line(text: string): void {
    this.out.write(this.tty ? `\r\x1b[2K${text}\n` : `${text}\n`);
  }

  start(label: string, total: number, what: string): void {
    this.label = label;
    this.total = total;
    this.lastPlain = 0;
    this.line(`${what}: ${label}, ${total} steps`);
  }

  update(step: number, loss: number, lr: number, tokensPerSec: number): void {
    const stats = `loss ${loss.toFixed(4)}  lr ${lr.toExponential(2)}  ${tokensPerSec.toFixed(0)} tok/s`;
    if (this.tty) {
      const width = 24;
      const filled = Math.round((width * step) / Math.max(1, this.total));
      this.out.write(`\r\x1b[2K${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${this.total}  ${stats}`);
    } else if (step === this.total || step - this.lastPlain >= Math.max(1, Math.floor(this.total / 10))) {
      this.lastPlain = step;
      this.out.write(`${this.label} step ${step}/${this.total}  ${stats}\n`);
    }
  }

  finish(text: string): void {
    this.line(text);
  }
}
