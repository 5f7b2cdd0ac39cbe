// The written model behind bench/distributed/allreduce.mjs: the LoRA gradient size of each shape, its
// training FLOPs per token (the same count as bench/peer: 4·N_base + 6·N_lora + 12·L·s·attn_dim),
// the single-process step time those shapes take here, and a ring all-reduce cost model.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// Linear layers as [name, in, out]; `targets` are the LoRA'd ones (as in bench/peer's races).
export const SHAPES = {
  'opt-350m': {
    layers: 24, attnDim: 1024,
    linears: [['q_proj', 1024, 1024], ['k_proj', 1024, 1024], ['v_proj', 1024, 1024], ['out_proj', 1024, 1024], ['fc1', 1024, 4096], ['fc2', 4096, 1024]],
    // project_in / project_out (512 <-> 1024) and the tied 50272 × 512 head, counted once.
    extraBase: 2 * 512 * 1024 + 50272 * 512,
    targets: ['q_proj', 'k_proj', 'v_proj'],
  },
  'smollm2-360m': {
    layers: 32, attnDim: 960,
    linears: [['q_proj', 960, 960], ['k_proj', 960, 320], ['v_proj', 960, 320], ['o_proj', 960, 960], ['gate_proj', 960, 2560], ['up_proj', 960, 2560], ['down_proj', 2560, 960]],
    extraBase: 49152 * 960, // the tied head
    targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  },
};

/** LoRA parameters (A: r × in, B: out × r per target and layer) = the f32 gradient's length. */
export function loraParams(shape, r) {
  const s = SHAPES[shape];
  return s.layers * s.linears.filter(([n]) => s.targets.includes(n)).reduce((acc, [, i, o]) => acc + r * (i + o), 0);
}

export function flopPerToken(shape, r, seq) {
  const s = SHAPES[shape];
  const base = s.layers * s.linears.reduce((acc, [, i, o]) => acc + i * o, 0) + s.extraBase;
  return 4 * base + 6 * loraParams(shape, r) + 12 * s.layers * seq * s.attnDim;
}

/**
 * Single-process step time (ms) of `shape` at rank r, bf16, batch 4 × 256, 2 threads, from the newest
 * bench/results/peer-*.json (OPT-350m, r = 8/128/256 measured): OPT at a measured r is that figure;
 * an r between two measured ones is interpolated linearly (FLOPs are linear in r). SmolLM2-360M has no
 * measured step here (no peer-llama-*.json), so its step is its FLOPs at the OPT r = 8 step's achieved
 * GFLOP/s — assumed to carry over (same kernels, same batch × seq; bench/peer/README's llama race reports
 * a comparable % of peak for that family, but that is not a measurement of this machine now).
 */
export function stepTimes(resultsDir) {
  const llama = readdirSync(resultsDir).filter((f) => /^peer-llama-.*\.json$/.test(f));
  const peers = readdirSync(resultsDir).filter((f) => /^peer-\d{4}-\d\d-\d\d.*\.json$/.test(f))
    .map((f) => ({ f, d: JSON.parse(readFileSync(join(resultsDir, f), 'utf8')) }))
    .filter(({ d }) => d.complete && d.runs?.some((x) => x.dtype === 'bf16' && x.r === 8 && x.ours?.ms_per_step))
    .sort((a, b) => a.d.started_at.localeCompare(b.d.started_at));
  const newest = peers.at(-1);
  if (!newest) throw new Error('no bench/results/peer-*.json with an OPT-350m bf16 r = 8 step');
  const measured = new Map(newest.d.runs.filter((x) => x.dtype === 'bf16' && x.ours?.ms_per_step).map((x) => [x.r, x.ours]));
  const r8 = measured.get(8);
  const seq = r8.seq;
  const gflops = (r8.gflop_per_token * r8.batch * r8.seq) / r8.ms_per_step; // GFLOP per ms → × 1000 = GFLOP/s
  const opt = (r) => {
    if (measured.has(r)) return { ms: measured.get(r).ms_per_step, how: `measured (${newest.f})` };
    const rs = [...measured.keys()].sort((a, b) => a - b);
    const lo = rs.filter((x) => x < r).at(-1);
    const hi = rs.find((x) => x > r);
    if (lo === undefined || hi === undefined) return { ms: (flopPerToken('opt-350m', r, seq) * r8.batch * seq) / 1e9 / gflops, how: 'FLOPs at the r = 8 GFLOP/s' };
    const t = (r - lo) / (hi - lo);
    return { ms: measured.get(lo).ms_per_step * (1 - t) + measured.get(hi).ms_per_step * t, how: `interpolated between measured r = ${lo} and r = ${hi} (${newest.f})` };
  };
  const smol = (r) => ({
    ms: (flopPerToken('smollm2-360m', r, seq) * r8.batch * seq) / 1e9 / gflops,
    how: `estimated: FLOPs at OPT-350m r = 8's ${Math.round(gflops * 1000)} GFLOP/s (${newest.f})`,
  });
  return { source: newest.f, llamaResults: llama, batch: r8.batch, seq, gflopsAtR8: gflops * 1000, opt, smol };
}

/** Ring all-reduce of `bytes` over p ranks: 2(p-1)/p · bytes / bandwidth + 2(p-1) · latency (seconds). */
export function ringSeconds(bytes, p, bitsPerS, latencyS) {
  return ((2 * (p - 1)) / p) * bytes / (bitsPerS / 8) + 2 * (p - 1) * latencyS;
}

export const LINKS = [
  // Per-message latency α of a ring step: kernel TCP over 10 GbE is ~25–50 µs one way on commodity
  // NICs; 100 Gbit/s fabrics used for training (RoCE/InfiniBand with Open MPI's UCX) ~5 µs. The
  // bandwidth is the line rate (no protocol overhead discount: TCP's goodput is ~94 % of it).
  { name: '10 Gbit/s', bitsPerS: 10e9, latencyS: 50e-6 },
  { name: '100 Gbit/s', bitsPerS: 100e9, latencyS: 5e-6 },
];
