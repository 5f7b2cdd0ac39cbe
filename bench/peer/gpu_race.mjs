#!/usr/bin/env node
// The GPU acceptance kit's training-step figures (scripts/gpu-kit/run.sh): one OPT-350m-shaped,
// random-init LoRA training step (q/k/v, alpha = 4r, dropout 0.1, AdamW on LoRA) at each rank on
// the CUDA backend — tokens/s, % of the card's dense bf16 tensor-core peak, peak device memory —
// and the same shape with PyTorch + PEFT (bench/peer/peft_step.py) on the same card.
//
//   node bench/peer/gpu_race.mjs --sides ours --ranks 8,128,256 --out step.json
//   node bench/peer/gpu_race.mjs --sides theirs --against step.json --out race.json
//
// Each rank runs in its own child process, so peak memory is per run. Without a usable GPU the
// "ours" side says so and stops (exit 3) unless --device names a host backend (tests use cpu).
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const L = { hidden: 1024, ffn: 4096, heads: 16, vocab: 50272, embedDim: 512, maxPositions: 2048 };
const { values: v } = parseArgs({
  options: {
    sides: { type: 'string', default: 'ours,theirs' }, ranks: { type: 'string', default: '8,128,256' },
    layers: { type: 'string', default: '24' }, batch: { type: 'string', default: '4' }, seq: { type: 'string', default: '256' },
    warmup: { type: 'string', default: '1' }, steps: { type: 'string', default: '3' }, device: { type: 'string', default: 'cuda' },
    python: { type: 'string', default: process.env.LORA_PEER_PYTHON ?? 'python3' }, against: { type: 'string' }, out: { type: 'string' },
    child: { type: 'boolean', default: false }, rank: { type: 'string' },
  },
});
const num = (name) => {
  const n = Number(v[name]);
  if (!Number.isInteger(n) || n < (name === 'warmup' ? 0 : 1)) throw new Error(`--${name} must be a positive integer, got ${v[name]}`);
  return n;
};
const shape = { layers: num('layers'), batch: num('batch'), seq: num('seq'), warmup: num('warmup'), steps: num('steps') };
const round = (x, d = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);

/** Uniform init with OPT's std (0.02): cheap enough for 331M values; only the timing is measured. */
function randomOptSource(sdk, config, seed) {
  const shapes = sdk.expectedOptWeights(config);
  const a = config.initStd * Math.sqrt(3);
  return {
    keys: () => [...shapes.keys()], has: (n) => shapes.has(n), info: (n) => ({ dtype: 'F32', shape: shapes.get(n) }),
    async read(name) {
      const s = shapes.get(name);
      const data = new Float32Array(s.reduce((p, q) => p * q, 1));
      if (name.endsWith('layer_norm.weight')) data.fill(1);
      else if (!name.endsWith('.bias')) {
        let x = (seed * 0x9e3779b1 + s[0] * 7919 + data.length) >>> 0 || 1;
        for (let i = 0; i < data.length; i++) {
          x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
          data[i] = ((x >>> 0) / 4294967296 * 2 - 1) * a;
        }
      }
      return { dtype: 'F32', shape: s, data };
    },
    async close() {},
  };
}

async function child() {
  const core = await import('@lora/core-native');
  const sdk = await import('@lora/sdk');
  const device = v.device;
  const status = core.native().backends().find((b) => b.name === (device === 'cpu' ? 'cpu' : device));
  if (!status?.usable) {
    process.stdout.write(`${JSON.stringify({ error: 'no GPU', reason: status?.reason ?? `backend ${device} not built` })}\n`);
    process.exit(3);
  }
  const r = num('rank');
  const config = sdk.parseOptConfig({
    model_type: 'opt', vocab_size: L.vocab, hidden_size: L.hidden, ffn_dim: L.ffn, num_hidden_layers: shape.layers,
    num_attention_heads: L.heads, max_position_embeddings: L.maxPositions, word_embed_proj_dim: L.embedDim,
    do_layer_norm_before: false, activation_function: 'relu', dropout: 0.1, attention_dropout: 0, activation_dropout: 0,
    pad_token_id: 1, bos_token_id: 2, eos_token_id: 2, enable_bias: true, init_std: 0.02, torch_dtype: 'float32',
  });
  const t0 = performance.now();
  const model = await sdk.OptForCausalLM.fromWeights(config, randomOptSource(sdk, config, 0), { device, dtype: 'bf16' });
  const lora = model.addLora({ r, alpha: 4 * r, dropout: 0.1, targetModules: ['q_proj', 'k_proj', 'v_proj'], seed: 0 });
  const initS = (performance.now() - t0) / 1000;
  const rand = sdk.seededRandom(0x5eed);
  const examples = Array.from({ length: shape.batch }, () => {
    const ids = Array.from({ length: shape.seq }, (_, t) => (t === 0 ? 2 : 3 + Math.floor(rand() * (L.vocab - 3))));
    return { inputIds: ids, labels: ids.slice() };
  });
  const total = shape.warmup + shape.steps;
  const ms = [], losses = [];
  const trainer = new sdk.Trainer(model, {
    examples, batchSize: shape.batch, seq: shape.seq, padding: 'longest', maxSteps: total, lr: 2e-4, schedule: 'constant',
    warmupSteps: 0, weightDecay: 0, maxGradNorm: 0, seed: 0, loggingSteps: total,
    onEvent: (e) => {
      if (e.type !== 'step') return;
      const stepMs = (1000 * e.tokens) / e.tokensPerSec;
      process.stderr.write(`r=${r} step ${e.step}/${total}${e.step <= shape.warmup ? ' (warmup)' : ''} loss ${e.loss.toFixed(4)} ${stepMs.toFixed(1)} ms\n`);
      if (e.step > shape.warmup) ms.push(stepMs), losses.push(e.loss);
    },
  });
  const res = await trainer.train();
  if (res.reason !== 'finished') throw new Error(`training stopped: ${res.reason} ${res.message ?? ''}`);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  const tps = (shape.batch * shape.seq) / (mean / 1000);
  const flop = sdk.flopsPerToken(config, lora, shape.seq);
  const peak = sdk.measurePeak(model.kernels, model.device.backend, device, 'bf16');
  const mem = core.native().memoryStats(device === 'cuda' ? 'cuda' : 'cpu');
  const out = {
    impl: 'lora', backend: model.device.backend, device_name: device === 'cuda' ? core.native().cudaInfo().deviceName : 'cpu',
    r, ...shape, dtype: 'bf16', ms_per_step: round(mean, 2), ms_per_step_min: round(Math.min(...ms), 2), tokens_per_s: round(tps),
    gflop_per_token: round(flop / 1e9, 4), gflops: round((flop * tps) / 1e9), peak_gflops: round(peak.gflops), peak_source: peak.source,
    pct_of_peak: round((100 * flop * tps) / 1e9 / peak.gflops, 2),
    peak_device_mb: round(mem.peakAllocated / 2 ** 20), peak_device_reserved_mb: round(mem.peakReserved / 2 ** 20),
    loss_first: round(losses[0], 4), loss_last: round(losses.at(-1), 4), trainable: lora.trainableParameters(), init_s: round(initS, 2),
  };
  model.dispose();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** Runs one child, forwards its stderr, returns its last stdout line as JSON (or an error record). */
function runChild(cmd, args, label) {
  return new Promise((resolveRun) => {
    // Under the kit's node wrapper (run.sh, old system libstdc++), python gets the system's libraries back.
    const sys = process.env.LORA_KIT_SYSTEM_LD_LIBRARY_PATH;
    const env = sys === undefined || cmd === process.execPath ? process.env : { ...process.env, LD_LIBRARY_PATH: sys };
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => process.stderr.write(`[${label}] ${d}`));
    p.on('error', (e) => resolveRun({ error: `${cmd}: ${e.message}` }));
    p.on('close', (code, sig) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      let json;
      try {
        json = JSON.parse(last);
      } catch {
        json = { error: `exit ${code ?? sig}, no JSON line`, stdout_tail: out.slice(-500) };
      }
      resolveRun(code === 0 ? json : { ...json, error: json.error ?? `exit ${code ?? sig}`, exit: code });
    });
  });
}

async function parent() {
  const ranks = v.ranks.split(',').map(Number);
  const sides = v.sides.split(',');
  const common = ['--layers', v.layers, '--batch', v.batch, '--seq', v.seq, '--warmup', v.warmup, '--steps', v.steps];
  const report = { shape: { layout: 'opt-350m', ...shape, dtype: 'bf16', lora: 'q,k,v alpha=4r dropout=0.1' }, ours: [], theirs: [] };
  if (v.against) report.ours = JSON.parse(readFileSync(v.against, 'utf8')).ours;
  for (const r of ranks) {
    if (sides.includes('ours')) {
      report.ours.push({ r, ...(await runChild(process.execPath, [fileURLToPath(import.meta.url), '--child', '--rank', String(r), '--device', v.device, ...common], `ours r=${r}`)) });
      if (report.ours.at(-1).error === 'no GPU') break; // the other ranks would say the same
    }
    if (sides.includes('theirs')) {
      const dev = v.device === 'cuda' ? 'cuda' : 'cpu';
      report.theirs.push({ r, ...(await runChild(v.python, [join(HERE, 'peft_step.py'), '--rank', String(r), '--device', dev, ...common], `peft r=${r}`)) });
    }
  }
  report.ratios = ranks.map((r) => {
    const a = report.ours.find((o) => o.r === r), b = report.theirs.find((o) => o.r === r);
    return { r, tokens_per_s_vs_peft: a?.tokens_per_s && b?.tokens_per_s ? round(a.tokens_per_s / b.tokens_per_s, 3) : null,
      peak_mem_vs_peft: a?.peak_device_mb && b?.peak_device_mb ? round(a.peak_device_mb / b.peak_device_mb, 3) : null };
  });
  for (const o of [...report.ours, ...report.theirs]) {
    console.log(o.error ? `${o.impl ?? 'run'} r=${o.r ?? '?'}: ${o.error}${o.reason ? ` (${o.reason})` : ''}` :
      `${o.impl.split(' (')[0]} r=${o.r ?? o.lora?.r}: ${o.tokens_per_s} tokens/s, ${o.ms_per_step} ms/step, ${o.gflops} GFLOP/s${o.pct_of_peak != null ? ` (${o.pct_of_peak}% of ${o.peak_gflops} GFLOP/s)` : ''}, peak ${o.peak_device_mb ?? '-'} MiB`);
  }
  if (v.out) writeFileSync(v.out, `${JSON.stringify(report, null, 2)}\n`);
  const failed = [...report.ours, ...report.theirs].filter((o) => o.error);
  process.exitCode = failed.length === 0 ? 0 : failed.every((o) => o.error === 'no GPU') ? 3 : 1;
}

await (v.child ? child() : parent());
