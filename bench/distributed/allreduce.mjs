#!/usr/bin/env node
// All-reduce cost of data-parallel LoRA training (issue 17): times the sum of a LoRA-grad-sized f32
// buffer between 2 Open MPI ranks (the Communicator the Trainer uses) for OPT-350m (q/k/v) and a
// SmolLM2-360M-shaped model (all seven linears) at r = 8/64/256, over TCP (btl tcp,self) and shared
// memory (btl vader,self), then sets each against the single-process step (model.mjs) and projects a
// ring all-reduce to 2/8/64 ranks over 10/100 Gbit/s. See bench/README.md "Distributed all-reduce".
//
//   node bench/distributed/allreduce.mjs                        # both transports, all sizes (~1-2 min here)
//   node bench/distributed/allreduce.mjs --transports tcp --ranks 8 --out /tmp/d.json
//
// Run without mpirun it is the launcher; mpirun starts the same file as each rank.
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { LINKS, loraParams, ringSeconds, SHAPES, stepTimes } from './model.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const MIB = 2 ** 20;

if (process.env.OMPI_COMM_WORLD_SIZE) await rankMain(JSON.parse(process.argv[2]));
else await launch();

/** One rank: a barrier, then the timed in-place sum, per size; rank 0 prints one JSON line. */
async function rankMain({ sizes, budgetS, maxReps }) {
  const { Communicator } = await import('@lora/core-native');
  const comm = await Communicator.fromEnvironment({ timeoutS: 120 });
  const p = comm.size;
  const flag = new Uint8Array(1);
  // The ranks agree on every repeat: rank 0 decides (its clock, its budget) and broadcasts.
  const again = async (go) => { flag[0] = go ? 1 : 0; await comm.broadcast(flag, 0); return flag[0] === 1; };
  // Small-message latency first (it also opens the connections, so the first size is not charged for it).
  const tiny = new Float64Array(1);
  const tinyMs = [];
  for (let i = 0; i < 40; i++) {
    await comm.barrier();
    const t0 = performance.now();
    await comm.allreduceSum(tiny);
    tinyMs.push(performance.now() - t0);
  }
  const out = [];
  for (const { key, floats } of sizes) {
    const buf = new Float32Array(floats);
    const ms = [];
    let ok = true;
    // One untimed sum first: the first call of a new size runs 1.5-3x slower here (the ranks' fresh
    // pages and MPI's first large-message buffers), which a training run pays once, not every step.
    buf.fill(comm.rank + 1);
    await comm.barrier();
    const w0 = performance.now();
    await comm.allreduceSum(buf);
    const warmupMs = performance.now() - w0;
    const start = performance.now();
    do {
      buf.fill(comm.rank + 1);
      await comm.barrier();
      const t0 = performance.now();
      await comm.allreduceSum(buf);
      ms.push(performance.now() - t0);
      // Every element is 1 + 2 + … + p (small integers: exact in f32). Checked at a few places.
      const want = (p * (p + 1)) / 2;
      for (const i of [0, floats >> 1, floats - 1]) ok &&= buf[i] === want;
    } while (await again(ms.length < maxReps && (performance.now() - start) / 1000 < budgetS));
    out.push({ key, floats, warmupMs, ms, ok });
  }
  if (comm.rank === 0) console.log(`RESULT ${JSON.stringify({ size: p, library: comm.library, tinyMs, sizes: out })}`);
  comm.finalize();
}

async function launch() {
  const { values: a } = parseArgs({
    options: {
      transports: { type: 'string', default: 'tcp,shm' },
      ranks: { type: 'string', default: '8,64,256' },
      models: { type: 'string', default: Object.keys(SHAPES).join(',') },
      'budget-s': { type: 'string', default: '4' },
      'max-reps': { type: 'string', default: '5' },
      out: { type: 'string' },
    },
  });
  const rs = a.ranks.split(',').map(Number);
  const sizes = a.models.split(',').flatMap((m) => rs.map((r) => ({ key: `${m} r=${r}`, model: m, r, floats: loraParams(m, r) })));
  const spec = JSON.stringify({ sizes: sizes.map(({ key, floats }) => ({ key, floats })), budgetS: Number(a['budget-s']), maxReps: Number(a['max-reps']) });
  const btl = { tcp: 'tcp,self', shm: 'vader,self' };
  // Open MPI's documented switches for root, more ranks than cores, and containers (no ptrace: no CMA single copy).
  const env = {
    ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_rmaps_base_oversubscribe: '1',
    OMPI_MCA_btl_vader_single_copy_mechanism: 'none', LORA_NUM_THREADS: '1',
  };
  const started = new Date();
  const loadStart = os.loadavg();
  const transports = {};
  for (const t of a.transports.split(',')) {
    if (!btl[t]) throw new Error(`--transports: '${t}' is not tcp or shm`);
    const t0 = performance.now();
    const run = spawnSync('mpirun', ['-np', '2', '--mca', 'btl', btl[t], process.execPath, fileURLToPath(import.meta.url), spec], { env, encoding: 'utf8', timeout: 300_000, cwd: ROOT });
    const line = run.stdout?.split('\n').find((l) => l.startsWith('RESULT '));
    if (run.status !== 0 || !line) throw new Error(`mpirun (${t}) failed with status ${run.status}:\n${run.stdout}\n${run.stderr}`);
    transports[t] = { btl: btl[t], wallS: (performance.now() - t0) / 1000, loadavgAfter: os.loadavg(), ...JSON.parse(line.slice(7)) };
    console.error(`${t}: ${transports[t].wallS.toFixed(1)} s`);
  }
  const steps = stepTimes(join(ROOT, 'bench', 'results'));
  const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
  const rows = sizes.map(({ key, model, r, floats }) => {
    const bytes = floats * 4;
    const step = model === 'opt-350m' ? steps.opt(r) : steps.smol(r);
    const measured = Object.fromEntries(Object.entries(transports).map(([t, x]) => {
      const s = x.sizes.find((y) => y.key === key);
      const med = median(s.ms);
      return [t, { warmupMs: +s.warmupMs.toFixed(2), ms: s.ms.map((v) => +v.toFixed(2)), minMs: +Math.min(...s.ms).toFixed(2), medianMs: +med.toFixed(2), sumOk: s.ok, shareOfStep: +(med / (step.ms + med)).toFixed(4), mibPerS: +(bytes / MIB / (med / 1000)).toFixed(1) }];
    }));
    // Weak scaling (fixed per-rank batch): efficiency = step / (step + all-reduce), no overlap.
    const projected = LINKS.map((link) => ({
      link: link.name, latencyUs: link.latencyS * 1e6,
      ranks: [2, 8, 64].map((p) => {
        const ms = ringSeconds(bytes, p, link.bitsPerS, link.latencyS) * 1000;
        return { p, allreduceMs: +ms.toFixed(2), shareOfStep: +(ms / (step.ms + ms)).toFixed(4), efficiency: +(step.ms / (step.ms + ms)).toFixed(4) };
      }),
    }));
    return { key, model, r, targets: SHAPES[model].targets, floats, mib: +(bytes / MIB).toFixed(2), stepMs: +step.ms.toFixed(1), stepHow: step.how, measured, projected };
  });
  for (const row of rows) {
    const m = Object.entries(row.measured).map(([t, x]) => `${t} ${x.medianMs} ms (${(x.shareOfStep * 100).toFixed(1)} %)`).join(', ');
    const p64 = row.projected.map((l) => `${l.link} p=64 ${l.ranks[2].allreduceMs} ms (${(l.ranks[2].shareOfStep * 100).toFixed(2)} %)`).join(', ');
    console.log(`${row.key.padEnd(18)} ${String(row.mib).padStart(7)} MiB step ${row.stepMs} ms | here: ${m} | ${p64}`);
  }
  const result = {
    bench: 'dist-allreduce', complete: true, started_at: started.toISOString(), finished_at: new Date().toISOString(),
    machine: { cpu: os.cpus()[0]?.model, logical_cpus: os.cpus().length, loadavg_start: loadStart, loadavg_end: os.loadavg() },
    versions: { node: process.version, git_commit: spawnSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() },
    settings: { ranks: 2, transports: Object.fromEntries(Object.entries(transports).map(([t, x]) => [t, x.btl])), budgetS: Number(a['budget-s']), maxReps: Number(a['max-reps']), env: 'OMPI_MCA_btl_vader_single_copy_mechanism=none, LORA_NUM_THREADS=1', buffer: 'one Float32Array per size through Communicator.allreduceSum (reduce to rank 0 + broadcast, 16 MiB chunks), after a barrier; one untimed call per size first' },
    step: { source: steps.source, llamaResults: steps.llamaResults, batch: steps.batch, seq: steps.seq, dtype: 'bf16', threads: 2, gflopsAtOptR8: +steps.gflopsAtR8.toFixed(1) },
    costModel: { formula: 'time = 2(p-1)/p * bytes / bandwidth + 2(p-1) * latency; efficiency = step / (step + time) (no overlap, fixed per-rank batch)', links: LINKS },
    smallMessage: Object.fromEntries(Object.entries(transports).map(([t, x]) => [t, { medianMs: +median(x.tinyMs).toFixed(3), minMs: +Math.min(...x.tinyMs).toFixed(3) }])),
    transports: Object.fromEntries(Object.entries(transports).map(([t, x]) => [t, { library: x.library, wallS: +x.wallS.toFixed(1), loadavgAfter: x.loadavgAfter }])),
    rows,
  };
  const out = a.out ?? nextFree(join(ROOT, 'bench', 'results', `dist-${started.toISOString().slice(0, 10)}`));
  writeFileSync(`${out}.tmp`, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(`${out}.tmp`, out);
  console.log(`wrote ${out}`);
}

function nextFree(stem) {
  for (let i = 1; ; i++) {
    const p = i === 1 ? `${stem}.json` : `${stem}-${i}.json`;
    if (!existsSync(p)) return p;
  }
}
