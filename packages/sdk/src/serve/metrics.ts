// The server's metrics in Prometheus' text exposition format (version 0.0.4): counters, gauges read
// at scrape time, and cumulative histograms with le buckets, _sum and _count. Names follow vLLM's
// where one exists (time_to_first_token_seconds, time_per_output_token_seconds, num_requests_running).
type Labels = Record<string, string>;

const labelText = (l: Labels) => {
  const keys = Object.keys(l);
  if (!keys.length) return '';
  return `{${keys.map((k) => `${k}="${l[k].replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',')}}`;
};
const num = (v: number) => (Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN');

class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const v = this.values.get(key);
    if (v) v.value += by;
    else this.values.set(key, { labels, value: by });
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }
  /** Every label set counted so far, with its value. */
  entries(): [Labels, number][] {
    return [...this.values.values()].map((v) => [v.labels, v.value]);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (!this.values.size) lines.push(`${this.name} 0`);
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${num(value)}`);
    return lines.join('\n');
  }
}

class Gauge {
  constructor(readonly name: string, readonly help: string, private readonly read: () => number) {}
  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, `${this.name} ${num(this.read())}`].join('\n');
  }
}

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.counts[i]++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${num(b)}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${num(this.sum)}`, `${this.name}_count ${this.count}`);
    return lines.join('\n');
  }
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class ServerMetrics {
  readonly requests = new Counter('lora_requests_total', 'HTTP requests answered, by endpoint and status code.');
  readonly promptTokens = new Counter('lora_prompt_tokens_total', 'Prompt tokens of generation requests.');
  readonly generatedTokens = new Counter('lora_generation_tokens_total', 'Generated tokens.');
  readonly finished = new Counter('lora_request_success_total', 'Generation requests finished, by finish reason.');
  readonly ttft = new Histogram('lora_time_to_first_token_seconds', 'Time from arrival to the first generated token.', LATENCY_BUCKETS);
  readonly perToken = new Histogram('lora_time_per_output_token_seconds', 'Time between consecutive generated tokens of a request.', LATENCY_BUCKETS);
  readonly workerRestarts = new Counter('lora_worker_restarts_total', 'Times the model worker died and a new one was started.');
  readonly stepTime = new Histogram('lora_model_step_seconds', 'Time of one batched model step (the longest the event loop waits).', LATENCY_BUCKETS);
  private readonly gauges: Gauge[];

  constructor(read: { queueDepth: () => number; running: () => number; kvBytes: () => number; adapters: () => number }) {
    this.gauges = [
      new Gauge('lora_num_requests_waiting', 'Requests in the queue.', read.queueDepth),
      new Gauge('lora_num_requests_running', 'Rows in the running decode batch.', read.running),
      new Gauge('lora_kv_cache_bytes', 'Bytes held by the running requests\' KV caches.', read.kvBytes),
      new Gauge('lora_adapters_loaded', 'LoRA adapters being served.', read.adapters),
    ];
  }

  render(): string {
    const parts = [this.requests, this.promptTokens, this.generatedTokens, this.finished, this.workerRestarts, ...this.gauges, this.ttft, this.perToken, this.stepTime];
    return `${parts.map((p) => p.render()).join('\n')}\n`;
  }
}
