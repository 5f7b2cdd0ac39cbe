// The adapters a server serves, by name (vLLM's --lora-modules NAME=PATH: a request's `model` picks
// one). Adapters load and unload at run time; an unloaded adapter disappears from /v1/models and
// new requests at once, and its weights are freed when the last request using it finishes.
import { LoraError } from '../io/errors.js';
import { loadAdapterWeights, readAdapterConfig } from '../model/adapter-io.js';
import { LoraAdapter } from '../model/lora.js';
import type { CausalLM } from '../models/causal-lm.js';
import { ServeError } from './errors.js';
import type { AdapterLease } from './scheduler.js';

interface Served {
  name: string;
  path: string;
  lora: LoraAdapter;
  leases: number;
  unloaded: boolean;
  created: number;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

export class AdapterRegistry {
  private readonly served = new Map<string, Served>();
  private readonly loading = new Set<string>();

  constructor(
    private readonly model: CausalLM,
    private readonly baseName: string,
    /** The engine's view of each adapter: prepared after loading, forgotten before the weights are freed. */
    private readonly hooks: { loaded?: (lora: LoraAdapter) => void; disposing?: (lora: LoraAdapter) => void } = {},
  ) {}

  private free(s: Served): void {
    this.hooks.disposing?.(s.lora);
    s.lora.dispose();
  }

  get size(): number {
    return this.served.size;
  }

  list(): { name: string; path: string; created: number }[] {
    return [...this.served.values()].map((s) => ({ name: s.name, path: s.path, created: s.created }));
  }

  has(name: string): boolean {
    return this.served.has(name);
  }

  /** Loads a PEFT adapter folder under `name`; 400 for a taken or bad name or an unreadable adapter. */
  async load(name: string, path: string): Promise<void> {
    if (typeof name !== 'string' || !NAME.test(name)) throw new ServeError(400, 'invalid_value', `adapter name must match ${NAME}, got ${JSON.stringify(name)}`, 'lora_name');
    if (typeof path !== 'string' || !path) throw new ServeError(400, 'invalid_value', 'lora_path must be a non-empty string', 'lora_path');
    if (name === this.baseName || this.served.has(name) || this.loading.has(name)) {
      throw new ServeError(400, 'adapter_exists', `the name '${name}' is already served; unload it first`, 'lora_name');
    }
    this.loading.add(name);
    try {
      const m = this.model;
      let lora: LoraAdapter | undefined;
      try {
        // The family's LoRA layout: its module names and targets (an adapter for another family is refused).
        const options = await readAdapterConfig(path, m.loraLayout.targets);
        lora = new LoraAdapter(m.loraLayout, { ...options, dropout: 0, initLoraWeights: 'gaussian' }, m.device.memory);
        await loadAdapterWeights(lora, path, m.config);
        this.hooks.loaded?.(lora);
      } catch (e) {
        if (lora) this.hooks.disposing?.(lora);
        lora?.dispose();
        const why = e instanceof Error ? e.message : String(e);
        throw new ServeError(400, e instanceof LoraError ? `adapter_${e.code.toLowerCase()}` : 'adapter_load_failed', `cannot load adapter '${name}' from ${path}: ${why}`, 'lora_path');
      }
      this.served.set(name, { name, path, lora, leases: 0, unloaded: false, created: Math.floor(Date.now() / 1000) });
    } finally {
      this.loading.delete(name);
    }
  }

  unload(name: string): void {
    const s = this.served.get(name);
    if (!s) throw new ServeError(404, 'adapter_not_found', `no adapter named '${name}' is loaded`, 'lora_name');
    this.served.delete(name);
    s.unloaded = true;
    if (s.leases === 0) this.free(s);
  }

  /** The adapter for a request; released when the request finishes (the scheduler does it). */
  acquire(name: string): AdapterLease {
    const s = this.served.get(name);
    if (!s) throw new ServeError(404, 'model_not_found', `the model '${name}' does not exist`, 'model');
    s.leases++;
    let released = false;
    return {
      lora: s.lora,
      release: () => {
        if (released) return;
        released = true;
        s.leases--;
        if (s.unloaded && s.leases === 0) this.free(s);
      },
    };
  }

  dispose(): void {
    for (const name of [...this.served.keys()]) this.unload(name);
  }
}
