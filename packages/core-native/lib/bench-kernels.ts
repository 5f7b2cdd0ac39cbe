// Kernel benchmarks (`lora bench kernels`, `npm run bench:kernels`, `node bench/kernels/run.mjs`):
// the machine's measured peak (vdpbf16ps, FMA, vpdpbusd; 1 and 2 threads) and, in the same run,
// the OPT-125m / OPT-350m training GEMMs (bf16, NF4, int4 weights), fused LoRA forward+backward
// vs the base matmuls alone, and oneDNN's bf16 matmul on the same shapes when Debian's
// libdnnl-dev is installed (a separate small binary; the addon never links oneDNN).
// The machines are shared: the load average is recorded before and after, every figure is the
// best of `reps`, and fused LoRA and its base matmuls are timed alternately in one loop so that
// both see the same load. See bench/README.md for what each figure means.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { loadAddon } from './loader.js';
import type { NativeTensor } from './native.js';
import * as ops from './ops.js';

export interface KernelBenchOptions {
  /** Where to write kernels-<date>.json (default: <repo>/bench/results). */
  outDir?: string;
  /** Repetitions per measurement (best is kept; default 3). */
  reps?: number;
  /** Token counts (default [1024, 2048]). */
  tokens?: number[];
  /** Models (default both). */
  models?: ('opt-125m' | 'opt-350m')[];
  /** LoRA ranks (default [8, 128, 256]). */
  ranks?: number[];
  /** Path of bench/kernels/onednn_matmul.cc (default: found from the repo root). */
  onednnSource?: string;
  log?: (line: string) => void;
}

interface Peak {
  kind: string;
  threads: number;
  gops: number;
}

const MODELS = {
  'opt-125m': { hidden: 768, ffn: 3072, vocabIn: 768 },
  'opt-350m': { hidden: 1024, ffn: 4096, vocabIn: 512 },
} as const;
const VOCAB_CHUNK = 4096;

function rnd(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; ++i) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2147483648 - 1;
  }
  return a;
}

/** Best times of several functions timed alternately (one warm-up each). */
function bestInterleaved(reps: number, fns: (() => void)[]): number[] {
  for (const f of fns) f();
  const b = fns.map(() => Infinity);
  for (let i = 0; i < reps; ++i) {
    fns.forEach((f, j) => {
      const t = performance.now();
      f();
      b[j] = Math.min(b[j], performance.now() - t);
    });
  }
  return b;
}

/** bench/results/kernels-<date>.json, or kernels-<date>-<n>.json when that exists. */
function resultFile(dir: string): string {
  const date = new Date().toISOString().slice(0, 10);
  let file = join(dir, `kernels-${date}.json`);
  for (let n = 2; existsSync(file); ++n) file = join(dir, `kernels-${date}-${n}.json`);
  return file;
}

function best(reps: number, fn: () => void): number {
  fn();
  let b = Infinity;
  for (let i = 0; i < reps; ++i) {
    const t = performance.now();
    fn();
    b = Math.min(b, performance.now() - t);
  }
  return b;
}

function findRepoRoot(): string {
  let d = dirname(new URL(import.meta.url).pathname);
  for (let i = 0; i < 6; ++i) {
    if (existsSync(join(d, 'bench')) && existsSync(join(d, 'packages'))) return d;
    d = dirname(d);
  }
  return process.cwd();
}

function buildOnednn(src: string, log: (l: string) => void): string | undefined {
  if (!existsSync('/usr/include/oneapi/dnnl/dnnl.hpp')) {
    log('oneDNN: libdnnl-dev not installed (apt-get install -y libdnnl-dev) - skipped');
    return undefined;
  }
  const bin = join(tmpdir(), 'lora-onednn-matmul');
  try {
    execFileSync('g++', ['-O2', '-std=c++17', src, '-o', bin, '-ldnnl'], { stdio: 'pipe' });
    return bin;
  } catch (e) {
    log(`oneDNN: could not build ${src}: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

/** Runs the kernel benchmark, writes the JSON and returns it. */
export function runKernelBench(opts: KernelBenchOptions = {}): Record<string, unknown> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const addon = loadAddon().addon;
  const T = addon.Tensor;
  const reps = opts.reps ?? 3;
  const root = findRepoRoot();
  const cpu = addon.cpuInfo();
  const threads = ops.getNumThreads();
  const loadBefore = loadavg();
  log(`machine: ${cpu.model} (${cpu.logicalCores} logical cores), cpu backend threads: ${threads}, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);

  const peaks: Peak[] = [];
  const benchPeak = addon.benchPeak as (k: string, t: number, iters: number) => { gops: number };
  for (const kind of ['bf16', 'f32', 'int8']) {
    for (const t of [1, 2]) {
      let g = 0;
      for (let r = 0; r < 3; ++r) g = Math.max(g, benchPeak(kind, t, 4e6).gops);
      peaks.push({ kind, threads: t, gops: g });
      log(`peak ${kind} ${t} thread${t > 1 ? 's' : ''}: ${g.toFixed(0)} G${kind === 'int8' ? 'OP' : 'FLOP'}/s`);
    }
  }
  ops.setNumThreads(threads);
  const bf16Peak = peaks.find((p) => p.kind === 'bf16' && p.threads === Math.min(2, threads))!.gops;
  // vpdpbusd does 64 multiply-adds per instruction (128 OP), vdpbf16ps 32 (64 FLOP): their rates
  // say whether int8 weights are better fed to VNNI (with activations quantised to int8) or
  // decoded into bf16 pairs for vdpbf16ps, as this backend does.
  const int8Peak = peaks.find((p) => p.kind === 'int8' && p.threads === Math.min(2, threads))!.gops;
  log(`vpdpbusd vs vdpbf16ps: ${(int8Peak / 128).toFixed(2)} vs ${(bf16Peak / 64).toFixed(2)} G instructions/s; int8 OP/s = ${(int8Peak / bf16Peak).toFixed(2)}x bf16 FLOP/s`);

  const onednn = buildOnednn(opts.onednnSource ?? join(root, 'bench', 'kernels', 'onednn_matmul.cc'), log);
  // plain: weights passed [N, K] row-major on every call, as ours are (see onednn_matmul.cc).
  const runOnednn = (M: number, K: number, N: number, plain = false): number | undefined => {
    if (!onednn) return undefined;
    try {
      const args = [String(M), String(K), String(N), String(reps), ...(plain ? ['plain'] : [])];
      const out = execFileSync(onednn, args, { env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
      return parseFloat(out.toString());
    } catch {
      return undefined;
    }
  };

  const gemms: Record<string, unknown>[] = [];
  const loras: Record<string, unknown>[] = [];
  {
    // Warm-up, untimed: a few GEMMs of a mid-sized shape first (thread pool awake, packing
    // buffers grown), so the first timed shape does not pay for them.
    const x = T.fromArray(rnd(1024 * 1024, 9), [1024, 1024], 'bf16');
    const w = ops.cast(T.fromArray(rnd(1024 * 1024, 10), [1024, 1024]), 'bf16');
    const y = T.empty('f32', [1024, 1024]);
    for (let i = 0; i < 5; ++i) ops.matmulXWt(x, w, { out: y });
    for (const t of [x, w, y]) t.dispose();
  }
  for (const model of opts.models ?? ['opt-125m', 'opt-350m']) {
    const m = MODELS[model];
    const shapes: [string, number, number][] = [
      ['attn proj (C->C)', m.hidden, m.hidden],
      ['fc1 (C->ffn)', m.hidden, m.ffn],
      ['fc2 (ffn->C)', m.ffn, m.hidden],
      [`lm head chunk (${VOCAB_CHUNK} vocab rows)`, m.vocabIn, VOCAB_CHUNK],
    ];
    for (const M of opts.tokens ?? [1024, 2048]) {
      const tensors: NativeTensor[] = [];
      const keep = <X extends NativeTensor>(t: X): X => (tensors.push(t), t);
      for (const [name, K, N] of shapes) {
        const flop = 2 * M * K * N;
        const x = keep(T.fromArray(rnd(M * K, 1), [M, K], 'bf16'));
        const wf = keep(T.fromArray(rnd(N * K, 2), [N, K]));
        const y = keep(T.empty('f32', [M, N]));
        // The peak again, right before this shape: on a shared machine the cores we get change
        // during the run, and this is the ceiling the GEMM below actually had.
        let nearPeak = 0;
        for (let r = 0; r < 3; ++r) nearPeak = Math.max(nearPeak, benchPeak('bf16', Math.min(2, threads), 1e6).gops);
        const row: Record<string, unknown> = { model, name, M, K, N, bf16PeakNear: nearPeak };
        let bfMs = 0;
        let packedMs = 0;
        // bf16p: the same bf16 weight pre-packed once (what the SDK stores for a frozen base on the
        // cpu backend), the like-for-like comparison with oneDNN's pre-reordered weights.
        for (const wd of ['bf16', 'bf16p', 'nf4', 'int4', 'i8'] as const) {
          const w = keep(wd === 'bf16' ? ops.cast(wf, 'bf16') : ops.quantize(wf, wd));
          const ms = best(reps, () => ops.matmulXWt(x, w, { out: y }));
          if (wd === 'bf16') bfMs = ms;
          if (wd === 'bf16p') packedMs = ms;
          const gf = flop / ms / 1e6;
          row[wd] = { ms, gflops: gf, pctPeak: (100 * gf) / bf16Peak, pctPeakNear: (100 * gf) / nearPeak, vsBf16: bfMs / ms };
          log(`${model} M=${M} ${name} [${M}x${K}]·[${N}x${K}]ᵀ W=${wd}: ${ms.toFixed(2)} ms, ${gf.toFixed(0)} GFLOP/s, ${((100 * gf) / bf16Peak).toFixed(0)}% of bf16 peak (${((100 * gf) / nearPeak).toFixed(0)}% of the ${nearPeak.toFixed(0)} measured just before)${wd !== 'bf16' ? `, ${(bfMs / ms).toFixed(2)}x our bf16` : ''}`);
        }
        const dn = runOnednn(M, K, N);
        const dnPlain = runOnednn(M, K, N, true);
        if (dn !== undefined && dnPlain !== undefined) {
          row.onednn = { ms: dn, gflops: flop / dn / 1e6, oursVsOnednn: dn / bfMs, oursPackedVsOnednn: dn / packedMs };
          row.onednnPlainWeights = { ms: dnPlain, gflops: flop / dnPlain / 1e6, oursVsOnednn: dnPlain / bfMs };
          log(`  oneDNN bf16, weights reordered once: ${dn.toFixed(2)} ms, ${(flop / dn / 1e6).toFixed(0)} GFLOP/s; ours bf16p (packed once) / oneDNN speed ratio ${(dn / packedMs).toFixed(2)}x, ours bf16 ${(dn / bfMs).toFixed(2)}x; oneDNN with plain [N, K] weights per call like our bf16: ${dnPlain.toFixed(2)} ms, ours bf16 ${(dnPlain / bfMs).toFixed(2)}x`);
        }
        gemms.push(row);
      }
      // Fused LoRA on q/k/v (3 stacked groups sharing x) vs the base matmuls alone, with the
      // frozen weight pre-packed (bf16p) as the SDK stores it on this backend.
      const C = m.hidden;
      const x = keep(T.fromArray(rnd(M * C, 3), [M, C], 'bf16'));
      const w = keep(ops.quantize(keep(T.fromArray(rnd(3 * C * C, 4), [3 * C, C])), 'bf16p'));
      const y = keep(T.empty('f32', [M, 3 * C]));
      const dy = keep(T.fromArray(rnd(M * 3 * C, 5), [M, 3 * C], 'bf16'));
      const dx = keep(T.empty('f32', [M, C]));
      const base = () => {
        ops.matmulXWt(x, w, { out: y });
        ops.matmulDYW(dy, w, { out: dx });
      };
      for (const r of opts.ranks ?? [8, 128, 256]) {
        const a = keep(T.fromArray(rnd(3 * r * C, 6), [3 * r, C]));
        const b = keep(T.fromArray(rnd(3 * C * r, 7), [3 * C, r]));
        const da = keep(T.empty('f32', [3 * r, C]));
        const db = keep(T.empty('f32', [3 * C, r]));
        const xa = keep(T.empty('f32', [M, 3 * r]));
        for (const p of [0, 0.1]) {
          const o = { scale: 2, groups: 3, dropout: p, seed: 1 };
          const [ms, baseMs] = bestInterleaved(reps, [
            () => {
              ops.loraForward(x, w, a, b, { ...o, out: y, xa });
              ops.loraBackward(dy, x, w, a, b, xa, { ...o, dx, da, db });
            },
            base,
          ]);
          const baseFlop = 2 * 2 * M * C * 3 * C;
          const loraFlop = 2 * M * C * 3 * r * 4 + 2 * M * 3 * r * C * 2;
          const share = (baseFlop + loraFlop) / baseFlop;
          loras.push({ model, M, r, dropout: p, weight: 'bf16p', fusedMs: ms, baseMs, ratio: ms / baseMs, flopShare: share });
          log(`${model} M=${M} q/k/v LoRA r=${r} dropout=${p}: fused fwd+bwd ${ms.toFixed(2)} ms vs base matmuls ${baseMs.toFixed(2)} ms = ${(ms / baseMs).toFixed(3)}x (FLOP share ${share.toFixed(3)}x)`);
        }
      }
      for (const t of tensors) t.dispose();
    }
  }
  const loadAfter = loadavg();
  log(`load average after: ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
  const result = {
    date: new Date().toISOString(),
    machine: cpu.model,
    logicalCores: cpu.logicalCores,
    threads,
    reps,
    loadAverage: { before: loadBefore, after: loadAfter },
    peaks,
    int8OpsVsBf16Flops: int8Peak / bf16Peak,
    gemms,
    lora: loras,
  };
  const dir = opts.outDir ?? join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = resultFile(dir);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${file}`);
  return result;
}
