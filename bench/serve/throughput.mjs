// lora serve's continuous batching, measured below HTTP: aggregate generated tokens/s at 1, 4, 8 and
// 16 concurrent streams with 1 and 4 adapters, P50/P95 time to first token and inter-token latency,
// the longest model step and the main thread's event-loop delay, all in one run beside the
// single-stream generate() baseline. --mode worker (default; what lora serve runs): the model, its
// scheduler and adapters in the server's worker thread (WorkerBackend), tokens and latencies as the
// main thread receives them. --mode in-thread: the scheduler on the main thread, yielding after every
// layer (createServer given a loaded model).
//
//   node bench/serve/throughput.mjs [--mode worker|in-thread] [--hidden 768 --layers 12 --ffn 3072 --heads 12] [--tokens 32] [--out FILE]
//
// The model is a random OPT of the given shape (opt-125m's by default) with a small byte-level
// vocabulary (made by ensureTinyModel in a temp folder), adapters r=8 on q/k/v. f32 weights on the
// cpu backend, like the serve tests; LORA_NUM_THREADS sets the threads.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { ensureTinyModel, OptForCausalLM, OptTokenizer, syntheticCodeInstructions, OptDecodeEngine, Scheduler, AdapterRegistry, WorkerBackend, percentile } from '../../packages/sdk/dist/index.js';

const { values } = parseArgs({
  options: {
    hidden: { type: 'string', default: '768' }, layers: { type: 'string', default: '12' }, ffn: { type: 'string', default: '3072' },
    heads: { type: 'string', default: '12' }, tokens: { type: 'string', default: '32' }, out: { type: 'string' }, dtype: { type: 'string', default: 'f32' },
    streams: { type: 'string', default: '1,4,8,16' }, reps: { type: 'string', default: '3' }, mode: { type: 'string', default: 'worker' },
  },
});
const shape = { hidden: +values.hidden, layers: +values.layers, ffn: +values.ffn, heads: +values.heads };
const maxTokens = +values.tokens;
const root = await mkdtemp(join(tmpdir(), 'lora-serve-bench-'));
try {
  const records = syntheticCodeInstructions(64, 1);
  const { dir } = await ensureTinyModel(join(root, 'model'), records, { ...shape, embedDim: shape.hidden, merges: 400, maxPositions: 512, warmupRounds: 0 });
  const adapterDirs = [];
  for (let i = 0; i < 4; i++) {
    const m = await OptForCausalLM.fromPretrained(dir, { device: 'cpu' });
    m.addLora({ r: 8, alpha: 32, targetModules: ['q_proj', 'k_proj', 'v_proj'], initLoraWeights: false, seed: i });
    adapterDirs.push(join(root, `a${i}`));
    await m.saveAdapter(adapterDirs[i]);
    m.dispose();
  }
  const tok = await OptTokenizer.fromPretrained(dir);
  const model = await OptForCausalLM.fromPretrained(dir, { device: 'cpu', dtype: values.dtype });
  const registry = new AdapterRegistry(model, 'base');
  for (let i = 0; i < 4; i++) await registry.load(`a${i}`, adapterDirs[i]);
  const worker = values.mode === 'worker';
  let steps = [];
  const backend = worker
    ? new WorkerBackend(
      { source: dir, load: { device: 'cpu', dtype: values.dtype }, baseName: 'base', engine: {}, scheduler: { maxBatch: 16, prefillChunk: 64, kvBudgetBytes: 2 ** 30 } },
      { maxQueue: 64, onStep: (_r, _t, ms) => steps.push(ms) },
    )
    : undefined;
  if (backend) {
    await backend.ready();
    for (let i = 0; i < 4; i++) await backend.adapters.load(`a${i}`, adapterDirs[i]);
  }
  const prompts = records.slice(0, 16).map((r) => tok.encode(`${r.instruction}\n`).slice(0, 24));

  // Baseline: one stream through generate() alone, adapter a0 (second call timed).
  await model.loadAdapter(adapterDirs[0]);
  await model.generate(prompts[0], { maxNewTokens: maxTokens, stopTokens: [] });
  const g = await model.generate(prompts[0], { maxNewTokens: maxTokens, stopTokens: [] });
  const baseline = { tokensPerSec: (1000 * g.tokens.length) / g.totalMs, ttftMs: g.timeToFirstTokenMs };
  model.removeLora();

  // One configuration, best of `reps` by throughput (the machines are shared and noisy); one
  // untimed pass first warms the allocator's caches.
  const measure = async (adapters, streams) => {
    let best;
    for (let rep = 0; rep < reps; rep++) {
      const r = await once(adapters, streams);
      if (!best || r.tokensPerSec > best.tokensPerSec) best = r;
    }
    return best;
  };
  const reps = +values.reps;
  const once = async (adapters, streams) => {
      const ttft = [];
      const itl = [];
      steps = [];
      const sampling = { temperature: 0, topP: 1, topK: 0, seed: 0, maxTokens, stopTokenIds: [] };
      const sched = worker ? undefined : new Scheduler(new OptDecodeEngine(model), {
        maxBatch: 16, prefillChunk: 64,
        observer: { firstToken: (ms) => ttft.push(ms), interToken: (ms) => itl.push(ms), step: (_r, _t, ms) => steps.push(ms) },
      });
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      const t0 = performance.now();
      const outs = await Promise.all(Array.from({ length: streams }, (_, i) => {
        if (!worker) return sched.submit({ prompt: prompts[i % prompts.length], sampling, adapter: registry.acquire(`a${i % adapters}`) });
        const start = performance.now();
        let last = 0;
        const onToken = () => {
          const now = performance.now();
          if (last) itl.push(now - last);
          else ttft.push(now - start);
          last = now;
        };
        return backend.submit({ prompt: prompts[i % prompts.length], adapter: `a${i % adapters}`, sampling, signal: new AbortController().signal, onToken }).outcome;
      }));
      const wall = performance.now() - t0;
      loop.disable();
      const generated = outs.reduce((a, o) => a + o.tokens.length, 0);
      const run = {
        adapters, streams, generated, wallMs: +wall.toFixed(1), tokensPerSec: +((1000 * generated) / wall).toFixed(1),
        ttftMs: { p50: +percentile(ttft, 50).toFixed(1), p95: +percentile(ttft, 95).toFixed(1) },
        interTokenMs: { p50: +percentile(itl, 50).toFixed(2), p95: +percentile(itl, 95).toFixed(2) },
        stepMs: { p50: +percentile(steps, 50).toFixed(2), max: +Math.max(...steps).toFixed(2) },
        eventLoopDelayMaxMs: +(loop.max / 1e6).toFixed(2),
      };
      return run;
  };
  await once(4, 16);
  const runs = [];
  for (const adapters of [1, 4]) {
    for (const streams of values.streams.split(',').map(Number)) {
      const run = await measure(adapters, streams);
      runs.push(run);
      console.log(JSON.stringify(run));
    }
  }
  const at = (a, s) => runs.find((r) => r.adapters === a && r.streams === s);
  const summary = {
    speedup8vs1: at(1, 8) && at(1, 1) ? +(at(1, 8).tokensPerSec / at(1, 1).tokensPerSec).toFixed(2) : null,
    mix4vs1At8: at(4, 8) && at(1, 8) ? +(at(1, 8).tokensPerSec / at(4, 8).tokensPerSec).toFixed(3) : null,
    mix4vs1At16: at(4, 16) && at(1, 16) ? +(at(1, 16).tokensPerSec / at(4, 16).tokensPerSec).toFixed(3) : null,
  };
  const result = {
    date: new Date().toISOString(), mode: values.mode, cpu: cpus()[0]?.model, threads: process.env.LORA_NUM_THREADS ?? 'default', loadAverage: loadavg(),
    model: { ...shape, vocab: model.config.vocabSize, dtype: values.dtype, params: model.baseParameters() }, maxTokens, baseline, runs, summary,
  };
  console.log(JSON.stringify({ baseline, summary }));
  const out = values.out ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'results', `serve-${new Date().toISOString().slice(0, 10)}.json`);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`written ${out}`);
  await backend?.close();
  registry.dispose();
  model.dispose();
} finally {
  await rm(root, { recursive: true, force: true });
}
