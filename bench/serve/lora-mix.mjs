// The cost of mixing adapters in one continuous batch (issue 15's goal: 4 adapters in one batch
// cost <= 15 % over one adapter). Drives the model's ragged-batch step through the serve engine
// directly (no scheduler, no HTTP): 8 streams decode together, all on one adapter or on 4 adapters
// (2 rows each), same prompts, same batch; configurations alternate repeat by repeat so the host's
// load drifts over all of them alike. Also the shared-base op's own time against the plain base
// product on the model's q/k/v shape (one adapter vs four segments), the same way.
//
//   node bench/serve/lora-mix.mjs [--hidden 768 --layers 12 --ffn 3072 --heads 12] [--dtypes f32,bf16]
//        [--targets q_proj,k_proj,v_proj] [--r 8] [--steps 24] [--reps 7] [--out FILE]
//
// A random OPT of the given shape (opt-125m's by default) with a small byte-level vocabulary
// (ensureTinyModel in a temp folder), cpu backend; LORA_NUM_THREADS sets the threads. Reported:
// each configuration's median aggregate decode tokens/s, the median and spread (min..max) of the
// per-repeat ratio one-adapter / four-adapters (a paired ratio: both from the same repeat), and the
// host's load average before and after (other engineers share these 2 cores).
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { native, ops } from '../../packages/core-native/dist/index.js';
import { ensureTinyModel, OptForCausalLM, LoraAdapter, ModelDecodeEngine, syntheticCodeInstructions } from '../../packages/sdk/dist/index.js';

const { values } = parseArgs({
  options: {
    hidden: { type: 'string', default: '768' }, layers: { type: 'string', default: '12' }, ffn: { type: 'string', default: '3072' },
    heads: { type: 'string', default: '12' }, dtypes: { type: 'string', default: 'f32,bf16' }, targets: { type: 'string', default: 'q_proj,k_proj,v_proj' },
    r: { type: 'string', default: '8' }, steps: { type: 'string', default: '24' }, reps: { type: 'string', default: '7' }, out: { type: 'string' },
  },
});
const shape = { hidden: +values.hidden, layers: +values.layers, ffn: +values.ffn, heads: +values.heads };
const steps = +values.steps;
const reps = +values.reps;
const r = +values.r;
const targets = values.targets.split(',');
const STREAMS = 8;
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor((v.length - 1) / 2)];
const load = () => loadavg().map((x) => +x.toFixed(2));

// One repeat of one configuration: prefill every stream (untimed), then `steps` decode steps of
// all 8 rows, timed. Returns aggregate decode tokens/s by the wall clock, and by the process's CPU
// time (user + system of every thread: on a shared host the wall clock also counts the time this
// process waited for a core, the CPU time does not).
function decodeRun(engine, prompts, adapters) {
  const caches = prompts.map((p) => engine.allocate(p.length + steps + 1));
  try {
    let out = engine.forward(prompts.map((p, i) => ({ cache: caches[i], ids: p, adapter: adapters[i], wantLogits: true })));
    let last = out.map((l) => argmax(l));
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let s = 0; s < steps; s++) {
      out = engine.forward(prompts.map((_, i) => ({ cache: caches[i], ids: [last[i]], adapter: adapters[i], wantLogits: true })));
      last = out.map((l) => argmax(l));
    }
    const cpu = process.cpuUsage(c0);
    return { wall: (STREAMS * steps * 1000) / (performance.now() - t0), cpu: (STREAMS * steps * 1e6) / (cpu.user + cpu.system) };
  } finally {
    for (const c of caches) c.dispose();
  }
}
function argmax(l) {
  let b = 0;
  for (let i = 1; i < l.length; i++) if (l[i] > l[b]) b = i;
  return b;
}

// The op alone on the model's fused q/k/v linear shape (x [8, C], W [3C, C], G = 3): the plain base
// product, the op with one segment of 8 rows and with four of 2 rows; alternating, many calls each.
function opTimes(dtype) {
  const C = shape.hidden, G = 3, M = STREAMS;
  const rnd = (n, s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s * 78.233) * 0.5);
  const T = native().Tensor;
  const x0 = T.fromArray(rnd(M * C, 1), [M, C], 'f32');
  const w0 = T.fromArray(rnd(G * C * C, 2), [G * C, C], 'f32');
  const bf = dtype === 'bf16';
  // Under bf16 autocast the model feeds bf16 x and keeps its weights pre-packed (bf16p).
  const x = bf ? ops.cast(x0, 'bf16') : x0;
  const w = bf ? ops.quantize(w0, 'bf16p') : w0;
  const bias = T.fromArray(rnd(G * C, 3), [G * C], 'f32');
  const y = T.empty('f32', [M, G * C], 'cpu');
  const ad = [0, 1, 2, 3].map((i) => ({ a: T.fromArray(rnd(G * r * C, 10 + i), [G * r, C], 'f32'), b: T.fromArray(rnd(G * C * r, 20 + i), [G * C, r], 'f32'), scale: 2 }));
  const one = [{ start: 0, len: M, ...ad[0] }];
  const four = [0, 1, 2, 3].map((i) => ({ start: 2 * i, len: 2, ...ad[i] }));
  const calls = 200;
  const time = (f) => {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) f();
    return ((performance.now() - t0) * 1000) / calls;
  };
  const runs = { base: [], one: [], four: [] };
  for (let rep = 0; rep < reps; rep++) {
    runs.base.push(time(() => ops.matmulXWt(x, w, { bias, out: y, backend: 'cpu' })));
    runs.one.push(time(() => ops.loraSegments(x, w, one, { bias, out: y, groups: G, backend: 'cpu' })));
    runs.four.push(time(() => ops.loraSegments(x, w, four, { bias, out: y, groups: G, backend: 'cpu' })));
  }
  const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, +median(v).toFixed(1)]));
  return {
    shape: { M, K: C, N: G * C, G, r, weight: bf ? 'bf16p' : 'f32', x: bf ? 'bf16' : 'f32' },
    medianMicroseconds: med,
    opOverBase: { oneSegment: +(med.one / med.base).toFixed(3), fourSegments: +(med.four / med.base).toFixed(3) },
    samplesMicroseconds: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((t) => +t.toFixed(1))])),
  };
}

const root = await mkdtemp(join(tmpdir(), 'lora-mix-bench-'));
const result = {
  bench: 'serve lora mix (bench/serve/lora-mix.mjs)', date: new Date().toISOString(), cpu: cpus()[0]?.model, vcpus: cpus().length,
  threads: process.env.LORA_NUM_THREADS ?? 'default', shape, adapters: { r, alpha: 2 * r, targets }, streams: STREAMS, decodeSteps: steps, reps,
  runs: [],
};
try {
  const records = syntheticCodeInstructions(64, 1);
  const { dir } = await ensureTinyModel(join(root, 'model'), records, { ...shape, embedDim: shape.hidden, merges: 400, maxPositions: 512, warmupRounds: 0 });
  for (const dtype of values.dtypes.split(',')) {
    const model = await OptForCausalLM.fromPretrained(dir, { device: 'cpu', dtype });
    const made = [0, 1, 2, 3].map((i) => new LoraAdapter(model.loraLayout, { r, alpha: 2 * r, targetModules: targets, initLoraWeights: false, seed: 7 + i }, model.device.memory));
    const prompts = Array.from({ length: STREAMS }, (_, i) => Array.from({ length: 16 }, (_, t) => 3 + ((i * 37 + t * 11) % 200)));
    const oneAdapter = prompts.map(() => made[0]);
    const fourAdapters = prompts.map((_, i) => made[i >> 1]);
    const shared = new ModelDecodeEngine(model, { shareBase: true });
    const unshared = new ModelDecodeEngine(model, { shareBase: false });
    const loadBefore = load();
    decodeRun(shared, prompts, fourAdapters); // warm-up (allocator caches, packing buffers)
    const tps = { oneAdapter: [], fourAdapters: [], fourAdaptersPerSegmentFused: [] };
    const cpuTps = { oneAdapter: [], fourAdapters: [], fourAdaptersPerSegmentFused: [] };
    for (let rep = 0; rep < reps; rep++) {
      // Alternating order within a repeat too, so neither side always runs first.
      const order = rep % 2 ? ['fourAdapters', 'oneAdapter', 'fourAdaptersPerSegmentFused'] : ['oneAdapter', 'fourAdapters', 'fourAdaptersPerSegmentFused'];
      for (const k of order) {
        const r = decodeRun(k === 'fourAdaptersPerSegmentFused' ? unshared : shared, prompts, k === 'oneAdapter' ? oneAdapter : fourAdapters);
        tps[k].push(r.wall);
        cpuTps[k].push(r.cpu);
      }
    }
    const ratios = tps.oneAdapter.map((t, i) => t / tps.fourAdapters[i]);
    const fusedRatios = tps.oneAdapter.map((t, i) => t / tps.fourAdaptersPerSegmentFused[i]);
    const cpuRatios = cpuTps.oneAdapter.map((t, i) => t / cpuTps.fourAdapters[i]);
    const spread = (v) => ({ medianRatio: +median(v).toFixed(3), min: +Math.min(...v).toFixed(3), max: +Math.max(...v).toFixed(3) });
    const op = opTimes(dtype);
    const run = {
      dtype, loadBefore, loadAfter: load(),
      medianTokensPerSec: Object.fromEntries(Object.entries(tps).map(([k, v]) => [k, +median(v).toFixed(1)])),
      mixCost: { medianRatio: +median(ratios).toFixed(3), min: +Math.min(...ratios).toFixed(3), max: +Math.max(...ratios).toFixed(3), note: 'one-adapter tok/s over four-adapter tok/s, per repeat (1.15 = 15 % slower mixed)' },
      mixCostPerSegmentFused: spread(fusedRatios),
      mixCostByCpuTime: { ...spread(cpuRatios), note: 'the same ratio from tokens per CPU-second of the process (insensitive to waiting for a core)' },
      medianTokensPerCpuSec: Object.fromEntries(Object.entries(cpuTps).map(([k, v]) => [k, +median(v).toFixed(1)])),
      samplesTokensPerSec: Object.fromEntries(Object.entries(tps).map(([k, v]) => [k, v.map((t) => +t.toFixed(1))])),
      op,
    };
    result.runs.push(run);
    console.log(JSON.stringify({ dtype, load: [loadBefore, run.loadAfter], tokPerSec: run.medianTokensPerSec, mixCost: run.mixCost, byCpu: run.mixCostByCpuTime, fused: run.mixCostPerSegmentFused, op: op.medianMicroseconds, opOverBase: op.opOverBase }));
    shared.dispose();
    unshared.dispose();
    for (const a of made) a.dispose();
    model.dispose();
  }
  const out = values.out ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'results', `serve-lora-mix-${new Date().toISOString().slice(0, 10)}.json`);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(result, null, 2) + '\n');
  console.log(`wrote ${out}`);
} finally {
  await rm(root, { recursive: true, force: true });
}
