// What the two CPU races (race.mjs: OPT, llama-race.mjs: Llama-shaped families) share: running each
// side in its own child process, the argument checks, rounding, RSS, the seeded random init and
// batch our side trains on, and writing the result JSON. Each race keeps its model, table and targets.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PYTHON = process.env.LORA_PEER_PYTHON ?? '/usr/bin/python3';

/** parseArgs options both races take (each adds its own: shapes or ranks, dtypes, ...). */
export const RACE_OPTIONS = {
  child: { type: 'string' },
  quick: { type: 'boolean', default: false },
  steps: { type: 'string' },
  warmup: { type: 'string' },
  layers: { type: 'string' },
  batch: { type: 'string' },
  seq: { type: 'string' },
  threads: { type: 'string' },
  seed: { type: 'string' },
  sides: { type: 'string' },
  out: { type: 'string' },
  checkpointing: { type: 'boolean', default: false },
  'no-peak': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
};

export function int(v, name, min = 1) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${v}`);
  return n;
}

export const round = (x, d = 1) => (typeof x === 'number' && Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);
export const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? Math.round((a / b) * 1000) / 1000 : null);

/** VmHWM / VmRSS of this process, in MB. */
export function vm(field) {
  const m = readFileSync('/proc/self/status', 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) / 1024 : null;
}

// ---------------------------------------------------------------------------------------------
// Our side: random weights made as they are read, and the batch

/** FNV-1a of a tensor name: each tensor's own seed, so the init does not depend on read order. */
export function hashName(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The seeded stream for one tensor's init. */
export const tensorRandom = (sdk, seed, name) => sdk.seededRandom((seed * 0x9e3779b1) ^ hashName(name));

/** Box–Muller normals N(0, std²) from a seeded stream into out, each stored as encode(value). */
export function fillNormal(out, std, rand, encode = (x) => x) {
  for (let i = 0; i < out.length; i += 2) {
    const m = std * Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12)));
    const a = 2 * Math.PI * rand();
    out[i] = encode(m * Math.cos(a));
    if (i + 1 < out.length) out[i + 1] = encode(m * Math.sin(a));
  }
  return out;
}

/**
 * Trainer options matching the python side's loop: one batch trained on every step, constant lr,
 * AdamW (betas 0.9/0.999, eps 1e-8, no weight decay) and no clipping - PyTorch's step has none;
 * maxGradNorm 0 turns ours off (the grad norm is still computed for NaN checks).
 */
export function trainerOptions(s, examples, lr, onEvent) {
  const total = s.warmup + s.steps;
  return {
    examples, batchSize: s.batch, seq: s.seq, padding: 'longest', maxSteps: total,
    lr, schedule: 'constant', warmupSteps: 0, weightDecay: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8,
    maxGradNorm: 0, seed: s.seed, loggingSteps: total, activationCheckpointing: s.checkpointing, onEvent,
  };
}

/** One batch as the python side makes it: ids in [3, vocab), each row starting with bos, labels = ids. */
export function randomExamples(sdk, count, seq, vocab, seed, bos) {
  const rand = sdk.seededRandom(seed ^ 0x5eed);
  return Array.from({ length: count }, () => {
    const ids = Array.from({ length: seq }, (_, t) => (t === 0 ? bos : 3 + Math.floor(rand() * (vocab - 3))));
    return { inputIds: ids, labels: ids.slice() };
  });
}

// ---------------------------------------------------------------------------------------------
// The race (parent process)

// The child running now, ended with the parent on SIGINT / SIGTERM.
let current;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    current?.kill('SIGKILL');
    process.exit(130);
  });
}

/** Runs a child, streams its stderr with a prefix, returns the last JSON line of its stdout. */
export function runChild(label, cmd, args, env) {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    current = child;
    let stdout = '';
    let errTail = '';
    let pending = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      const text = d.toString();
      errTail = (errTail + text).slice(-4000);
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) process.stderr.write(`  [${label}] ${line}\n`);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      current = undefined;
      if (pending) process.stderr.write(`  [${label}] ${pending}\n`);
      const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
      if (code !== 0 || !line) {
        reject(new Error(`${label} exited with ${signal ?? code}${line ? '' : ' and printed no JSON'}:\n${errTail}`));
        return;
      }
      const r = JSON.parse(line);
      r.process_wall_s = round((performance.now() - t0) / 1000, 1);
      resolvePromise(r);
    });
  });
}

/** A command's trimmed stdout in the repo root, or null when it fails (uptime, git). */
export function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

export const loadavg = () => os.loadavg().map((x) => round(x, 2));

export const gitVersions = () => ({
  git_commit: sh('git', ['rev-parse', 'HEAD']),
  git_dirty: (sh('git', ['status', '--porcelain', '--untracked-files=no']) ?? '') !== '',
});

/** bench/results/base.json, or base-2.json, base-3.json, ... when it exists: earlier results are never overwritten. */
export function freshResultPath(base) {
  const dir = join(ROOT, 'bench', 'results');
  let path = join(dir, `${base}.json`);
  for (let n = 2; existsSync(path); n++) path = join(dir, `${base}-${n}.json`);
  return path;
}

/** Written whole or not at all (a temp file renamed over it). */
export function writeResult(path, result) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.tmp`, JSON.stringify(result, null, 2) + '\n');
  renameSync(`${path}.tmp`, path);
}
