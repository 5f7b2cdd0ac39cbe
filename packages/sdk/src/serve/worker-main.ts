// The model's worker thread: loads the model here (the addon's tensors belong to the thread that
// made them), and owns the DecodeEngine, the continuous-batching Scheduler and the adapters' weights.
// The main thread sends requests, cancels, pauses and adapter loads (worker-protocol.ts); this thread
// answers with tokens, finishes, step times and the batch's counters, batched per model step.
import { parentPort, workerData } from 'node:worker_threads';

import { AutoModelForCausalLM } from '../models/auto.js';
import { AdapterRegistry } from './adapters.js';
import { ModelDecodeEngine, type DecodeEngine } from './engine.js';
import { Scheduler } from './scheduler.js';
import { toWire, type FromWorker, type ToWorker, type WorkerEvent, type WorkerInit } from './worker-protocol.js';

const port = parentPort!;
const init = (workerData as { init: WorkerInit }).init;
const send = (m: FromWorker) => port.postMessage(m);

async function main(): Promise<void> {
  let model;
  let engine;
  try {
    model = await AutoModelForCausalLM.fromPretrained(init.source, init.load);
    engine = new ModelDecodeEngine(model, init.engine);
  } catch (e) {
    model?.dispose();
    send({ t: 'load-failed', error: toWire(e) });
    port.close(); // nothing else keeps this thread alive: it exits
    return;
  }
  const events: WorkerEvent[] = [];
  let flushQueued = false;
  // Everything that happens in one synchronous stretch (a step's tokens, its finishes, its timing)
  // goes out as one message at the end of it.
  const emit = (e: WorkerEvent) => {
    events.push(e);
    if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(flush);
    }
  };
  const flush = () => {
    flushQueued = false;
    send({ t: 'events', events: events.splice(0), counters: { queueDepth: scheduler.queueDepth, runningRows: scheduler.runningRows, kvBytesInUse: scheduler.kvBytesInUse } });
  };
  const token = (id: number, tok: number) => {
    const last = events.at(-1);
    if (last?.t === 'tokens') last.pairs.push(id, tok);
    else emit({ t: 'tokens', pairs: [id, tok] });
  };

  const eng: DecodeEngine = engine;
  // The main thread decides admission and 429s (admission.ts), so this queue never refuses; and
  // nothing else waits on this thread's event loop, so a step runs whole (no per-layer yields).
  const scheduler = new Scheduler(eng, {
    ...init.scheduler, maxQueue: Infinity, layerYield: false,
    observer: { step: (rows, tokens, ms) => emit({ t: 'step', rows, tokens, ms }) },
  });
  const adapters = new AdapterRegistry(model, init.baseName, { loaded: (lora) => eng.prepare?.(lora), disposing: (lora) => eng.forget?.(lora) });
  const live = new Map<number, { abort: AbortController; paused: boolean }>();

  const submit = (m: Extract<ToWorker, { t: 'submit' }>) => {
    const state = { abort: new AbortController(), paused: false };
    let lease;
    try {
      lease = m.adapter === undefined ? undefined : adapters.acquire(m.adapter);
      const outcome = scheduler.submit({
        prompt: m.prompt, sampling: m.sampling, adapter: lease, signal: state.abort.signal,
        ready: () => !state.paused,
        onToken: (tok) => token(m.id, tok),
      });
      live.set(m.id, state);
      void outcome.then((o) => {
        live.delete(m.id);
        emit({ t: 'done', id: m.id, finishReason: o.finishReason, ...(o.error ? { error: toWire(o.error) } : {}) });
      });
    } catch (e) {
      lease?.release();
      emit({ t: 'done', id: m.id, finishReason: 'error', error: toWire(e) });
    }
  };

  const reply = async (rid: number, work: () => Promise<void> | void) => {
    try {
      await work();
      emit({ t: 'reply', rid });
    } catch (e) {
      emit({ t: 'reply', rid, error: toWire(e) });
    }
  };

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'submit':
        return submit(m);
      case 'cancel':
        return live.get(m.id)?.abort.abort();
      case 'pause':
      case 'resume': {
        const s = live.get(m.id);
        if (s) s.paused = m.t === 'pause';
        return;
      }
      case 'load':
        return void reply(m.rid, () => adapters.load(m.name, m.path));
      case 'unload':
        return void reply(m.rid, () => adapters.unload(m.name));
      case 'cancel-all':
        return scheduler.cancelAll();
      case 'close':
        // The main thread has drained; anything left (rows whose cancel is in flight) is cancelled.
        scheduler.cancelAll();
        void scheduler.drain().then(() => {
          adapters.dispose();
          eng.dispose?.();
          model.dispose();
          send({ t: 'closed' });
          port.close();
        });
        return;
    }
  });

  const info = { source: init.source, modelType: model.modelType, vocabSize: eng.vocabSize, maxPositions: eng.maxPositions, kvBytesPerPosition: eng.kvBytes(1) };
  send({ t: 'ready', info });
}

void main();
