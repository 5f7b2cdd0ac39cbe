// The in-thread backend: an already-loaded model (or a custom DecodeEngine) stepped on the calling
// thread, cooperatively — the scheduler yields to the event loop after every layer, so the HTTP side
// waits one layer of a step at most. A loaded model cannot move to a worker (the addon's tensors
// belong to the thread that made them), so this is what createServer(model) runs; `lora serve` and
// createServer({ model: DIR }) load the model in a worker instead (worker-backend.ts).
import type { CausalLM } from '../models/causal-lm.js';
import { AdapterRegistry } from './adapters.js';
import type { BackendRequest, BatchCounters, ModelBackend, ModelInfo, RequestHandle, ServedAdapters, StepObserver } from './backend.js';
import { ModelDecodeEngine, type DecodeEngine, type EngineOptions } from './engine.js';
import { Scheduler, type SchedulerOptions } from './scheduler.js';

export interface InThreadOptions {
  baseName: string;
  scheduler?: SchedulerOptions;
  /** Default: ModelDecodeEngine over the model. */
  engine?: DecodeEngine;
  engineOptions?: EngineOptions;
  onStep?: StepObserver;
}

export class InThreadBackend implements ModelBackend {
  readonly scheduler: Scheduler;
  readonly registry: AdapterRegistry;
  readonly adapters: ServedAdapters;
  readonly failure = undefined;
  private readonly info: ModelInfo;

  constructor(readonly model: CausalLM, o: InThreadOptions) {
    const engine: DecodeEngine = o.engine ?? new ModelDecodeEngine(model, o.engineOptions);
    this.scheduler = new Scheduler(engine, { ...o.scheduler, observer: { step: (rows, tokens, ms) => o.onStep?.(rows, tokens, ms) } });
    this.registry = new AdapterRegistry(model, o.baseName, { loaded: (lora) => engine.prepare?.(lora), disposing: (lora) => engine.forget?.(lora) });
    const registry = this.registry;
    this.adapters = {
      load: (name, path) => registry.load(name, path),
      unload: async (name) => registry.unload(name),
      list: () => registry.list(),
      has: (name) => registry.has(name),
      get size() {
        return registry.size;
      },
    };
    this.info = { source: model.source, modelType: model.modelType, vocabSize: engine.vocabSize, maxPositions: engine.maxPositions };
  }

  ready(): Promise<ModelInfo> {
    return Promise.resolve(this.info);
  }

  get counters(): BatchCounters {
    return this.scheduler;
  }

  submit(r: BackendRequest): RequestHandle {
    const lease = r.adapter === undefined ? undefined : this.registry.acquire(r.adapter);
    let paused = false;
    try {
      const outcome = this.scheduler.submit({ prompt: r.prompt, sampling: r.sampling, adapter: lease, signal: r.signal, ready: () => !paused, onToken: (id) => r.onToken(id) });
      return { outcome, pause: () => (paused = true), resume: () => (paused = false) };
    } catch (e) {
      lease?.release(); // refused before it ran: the scheduler never took the lease
      throw e;
    }
  }

  cancelAll(): void {
    this.scheduler.cancelAll();
  }

  drain(): Promise<void> {
    return this.scheduler.drain();
  }

  async close(): Promise<void> {
    await this.scheduler.drain();
    this.registry.dispose();
    this.scheduler.engine.dispose?.();
  }
}
