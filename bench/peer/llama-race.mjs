#!/usr/bin/env node
// The model-families race (issue 13): our LoRA step on a SmolLM2-360M-shaped and a Qwen2.5-0.5B-shaped
// model (@lora/sdk LlamaForCausalLM, cpu backend, bf16 base) against PyTorch's (llama_lora_step.py:
// llama_torch.py + PEFT-style LoRA under bf16 autocast) on the same shapes, back to back in one run,
// one process per side and model so each peak RSS (VmHWM) is that side's own. See bench/peer/README.md.
//
//   node bench/peer/llama-race.mjs                              # both shapes, full depth, 1 + 2 steps
//   node bench/peer/llama-race.mjs --quick                      # smoke: 1 layer, 1 × 64 tokens
//   node bench/peer/llama-race.mjs --shapes qwen2.5-0.5b --layers 8 --steps 3
//
// The same file is the "ours" child (`--child ours`), printing one JSON line as the python side does.
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  PYTHON, RACE_OPTIONS, fillNormal, freshResultPath, gitVersions, int, loadavg, randomExamples, ratio, round, runChild, sh, tensorRandom, trainerOptions, vm, writeResult,
} from './race-common.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const PY_SCRIPT = join(HERE, 'llama_lora_step.py');

// config.json fields of the two models (llama_torch.SHAPES has the same numbers for the python side).
const SHAPES = {
  'smollm2-360m': {
    model_type: 'llama', hidden_size: 960, intermediate_size: 2560, num_hidden_layers: 32, num_attention_heads: 15,
    num_key_value_heads: 5, head_dim: 64, vocab_size: 49152, rms_norm_eps: 1e-5, rope_theta: 100000, tie_word_embeddings: true,
    max_position_embeddings: 8192, attention_bias: false, hidden_act: 'silu', initializer_range: 0.02,
  },
  'qwen2.5-0.5b': {
    model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14,
    num_key_value_heads: 2, vocab_size: 151936, rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: true,
    max_position_embeddings: 32768, hidden_act: 'silu', initializer_range: 0.02,
  },
};
const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const LORA_DROPOUT = 0.05;
const LR = 2e-4;

const OPTIONS = {
  ...RACE_OPTIONS,
  shape: { type: 'string' },
  shapes: { type: 'string' },
  rank: { type: 'string' },
  'torch-base': { type: 'string' },
};

const HELP = `usage: node bench/peer/llama-race.mjs [options]

Races our LoRA training step (@lora/sdk LlamaForCausalLM, cpu backend, bf16 base) against PyTorch's
(bench/peer/llama_lora_step.py, bf16 autocast) with random init, LoRA on all seven linears
(q/k/v/o/gate/up/down, alpha = 2r, dropout 0.05), AdamW on LoRA only.

  --shapes a,b          smollm2-360m,qwen2.5-0.5b (default both)
  --rank N              LoRA r (default 16)
  --layers N            decoder layers (default each model's: 32 / 24; quick: 1)
  --batch N --seq N     tokens per step (default 4 × 512; quick: 1 × 64)
  --steps N --warmup N  timed and untimed steps per side (default 2 and 1)
  --threads N           threads on both sides (default 2)
  --torch-base f32,bf16 PyTorch's stored base: f32 (autocast over f32 weights, as the OPT race) and/or
                        bf16 (from_pretrained(torch_dtype=bfloat16)); one PyTorch run each (default f32)
  --sides ours,theirs   run one side only
  --no-peak             skip the same-run peak measurements
  --checkpointing       our side with activation checkpointing (each layer's input kept only)
  --out FILE            JSON (default bench/results/peer-llama-<date>.json, -2, -3 ... when it exists)
`;

const list = (v) => String(v).split(',').map((s) => s.trim()).filter(Boolean);

function settings(v) {
  const q = v.quick;
  const shapes = list(v.shapes ?? Object.keys(SHAPES).join(','));
  for (const s of shapes) if (!SHAPES[s]) throw new Error(`--shapes: '${s}' is not one of ${Object.keys(SHAPES).join(', ')}`);
  const torchBase = list(v['torch-base'] ?? 'f32');
  for (const b of torchBase) if (b !== 'f32' && b !== 'bf16') throw new Error(`--torch-base: '${b}' is neither f32 nor bf16`);
  const sides = list(v.sides ?? 'ours,theirs');
  for (const s of sides) if (s !== 'ours' && s !== 'theirs') throw new Error(`--sides: '${s}' is neither ours nor theirs`);
  return {
    shapes, torchBase, sides, quick: q,
    rank: int(v.rank ?? 16, 'rank'),
    layers: v.layers === undefined ? (q ? 1 : undefined) : int(v.layers, 'layers'),
    batch: int(v.batch ?? (q ? 1 : 4), 'batch'),
    seq: int(v.seq ?? (q ? 64 : 512), 'seq', 2),
    steps: int(v.steps ?? 2, 'steps'),
    warmup: int(v.warmup ?? 1, 'warmup', 0),
    threads: int(v.threads ?? 2, 'threads'),
    seed: int(v.seed ?? 0, 'seed', 0),
    peak: !v['no-peak'],
    checkpointing: v.checkpointing,
  };
}

function configJson(shape, layers) {
  const c = { ...SHAPES[shape] };
  if (layers !== undefined) c.num_hidden_layers = layers;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Our side (child process)

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
/** f32 -> bf16 bits, round to nearest even (the values are finite). */
function bf16(x) {
  F32[0] = x;
  const u = U32[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * A WeightSource that makes each tensor when it is read, in bf16 as the real checkpoints ship:
 * HF's init (normal(0, initializer_range) for linears and the embedding, zero biases, unit norms),
 * seeded per tensor name. Nothing on disk; no tensor held after the model has copied it.
 */
function randomLlamaSource(sdk, config, std, seed) {
  const shapes = sdk.paramShapes(sdk.expandParams(sdk.LLAMA_PARAMS, config));
  return {
    keys: () => [...shapes.keys()],
    has: (name) => shapes.has(name),
    info: (name) => ({ dtype: 'BF16', shape: shapes.get(name) }),
    async read(name) {
      const shape = shapes.get(name);
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Uint16Array(n);
      if (name.endsWith('norm.weight')) data.fill(bf16(1));
      else if (!name.endsWith('.bias')) fillNormal(data, std, tensorRandom(sdk, seed, name), bf16);
      return { dtype: 'BF16', shape, data };
    },
    async close() {},
  };
}

/** FLOPs per trained token, counted as llama_torch.flop_per_token does (4·N_base + 6·N_lora + 12·L·s·width). */
function flopPerToken(c, nLora, seq) {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const C = c.hiddenSize;
  const nBase = c.numHiddenLayers * (C * q + 2 * C * kv + q * C + 3 * C * c.intermediateSize) + c.vocabSize * C;
  return 4 * nBase + 6 * nLora + 12 * c.numHiddenLayers * seq * q;
}

async function runOurs(v) {
  const s = settings(v);
  process.env.LORA_NUM_THREADS = String(s.threads);
  const core = await import('@lora/core-native');
  const sdk = await import('@lora/sdk');
  core.ops.setNumThreads(s.threads);
  const json = configJson(v.shape, s.layers);
  const config = sdk.parseLlamaConfig(json);
  const t0 = performance.now();
  const model = await sdk.LlamaForCausalLM.fromWeights(config, randomLlamaSource(sdk, config, json.initializer_range, s.seed), { device: 'cpu', dtype: 'bf16' });
  const alpha = 2 * s.rank;
  const lora = model.addLora({ r: s.rank, alpha, dropout: LORA_DROPOUT, targetModules: TARGETS, seed: s.seed });
  const rssAfterLoad = vm('VmRSS');
  const hwmAfterLoad = vm('VmHWM');
  const initS = (performance.now() - t0) / 1000;
  const total = s.warmup + s.steps;
  const examples = randomExamples(sdk, s.batch, s.seq, config.vocabSize, s.seed, 1); // bos 1 (the python side's)
  const stepMs = [];
  const losses = [];
  const trainer = new sdk.Trainer(model, trainerOptions(s, examples, LR, (e) => {
    if (e.type !== 'step') return;
    const ms = (1000 * e.tokens) / e.tokensPerSec;
    process.stderr.write(`step ${e.step}/${total} ${e.step <= s.warmup ? '(warmup) ' : ''}loss ${e.loss.toFixed(4)} ${ms.toFixed(0)} ms\n`);
    if (e.step > s.warmup) {
      stepMs.push(ms);
      losses.push(e.loss);
    }
  }));
  const result = await trainer.train();
  if (result.reason !== 'finished') throw new Error(`training stopped: ${result.reason} ${result.message ?? ''}`);
  const ms = stepMs.reduce((a, b) => a + b, 0) / stepMs.length;
  const tps = (s.batch * s.seq) / (ms / 1000);
  const flop = flopPerToken(config, lora.trainableParameters(), s.seq);
  // The same-run bf16 peak: core-native's register-blocked vdpbf16ps loop on every pool thread.
  const peak = s.peak ? sdk.measurePeak(model.kernels, model.device.backend, 'cpu', 'bf16') : null;
  const mem = core.native().memoryStats('cpu');
  const out = {
    bench: 'llama_lora_step', impl: 'lora', node: process.version, threads: core.ops.getNumThreads(), backend: model.device.backend,
    shape: v.shape, config: json,
    lora: { r: s.rank, alpha, dropout: LORA_DROPOUT, targets: TARGETS },
    batch: s.batch, seq: s.seq, dtype: 'bf16', base_dtype: 'bf16', checkpointing: s.checkpointing, optimizer: { name: 'AdamW', lr: LR },
    warmup: s.warmup, steps: s.steps,
    ms_per_step: round(ms), ms_per_step_min: round(Math.min(...stepMs)), tokens_per_s: round(tps),
    gflop_per_token: round(flop / 1e9, 4), gflops: round((flop * tps) / 1e9),
    peak_gflops: peak ? round(peak.gflops) : null, peak_what: peak?.source ?? null,
    pct_of_peak: peak ? round((100 * flop * tps) / 1e9 / peak.gflops) : null,
    loss_first: round(losses[0], 4), loss_last: round(losses[losses.length - 1], 4),
    peak_rss_mb: round(vm('VmHWM')), rss_mb: round(vm('VmRSS')), rss_after_load_mb: round(rssAfterLoad), peak_rss_after_load_mb: round(hwmAfterLoad),
    native_peak_allocated_mb: round(mem.peakAllocated / 2 ** 20), base_mb: round(model.baseBytes() / 2 ** 20),
    params: { trainable: lora.trainableParameters(), all: model.baseParameters() + lora.trainableParameters() },
    init_s: round(initS, 2),
  };
  model.dispose();
  process.stdout.write(JSON.stringify(out) + '\n');
}

// ---------------------------------------------------------------------------------------------
// The race (parent process)

function common(s) {
  const a = ['--batch', s.batch, '--seq', s.seq, '--threads', s.threads, '--warmup', s.warmup, '--steps', s.steps, '--seed', s.seed];
  if (s.layers !== undefined) a.push('--layers', s.layers);
  if (!s.peak) a.push('--no-peak');
  return a.map(String);
}

function printRun(run, s) {
  const o = run.ours;
  const lines = [`${run.shape}, ${o?.config.num_hidden_layers ?? run.theirs?.[0]?.config.num_hidden_layers} layers, r=${s.rank} (7 targets), bf16, batch ${s.batch}×${s.seq}, ${s.warmup}+${s.steps} steps, ${s.threads} threads`];
  const row = (name, a, b, r) => `  ${name.padEnd(28)}${String(a ?? '—').padStart(18)}${String(b ?? '—').padStart(18)}${(r ? `${r.toFixed(3)}×` : '').padStart(10)}`;
  for (const t of run.theirs ?? [{}]) {
    const k = `ours vs pytorch (base ${t.base_dtype ?? '—'})`;
    lines.push(`  ${k}`);
    lines.push(row('tokens/s', o?.tokens_per_s, t.tokens_per_s, ratio(o?.tokens_per_s, t.tokens_per_s)));
    lines.push(row('ms/step (mean / min)', o && `${o.ms_per_step} / ${o.ms_per_step_min}`, t.ms_per_step && `${t.ms_per_step} / ${t.ms_per_step_min}`, null));
    lines.push(row('peak RSS (MB)', o?.peak_rss_mb, t.peak_rss_mb, ratio(o?.peak_rss_mb, t.peak_rss_mb)));
    lines.push(row('  ours: peak by end of load', o?.peak_rss_after_load_mb, null, null));
    lines.push(row('GFLOP/s', o?.gflops, t.gflops, null));
    lines.push(row('% of same-run bf16 peak', o?.pct_of_peak, o?.peak_gflops && t.gflops && round((100 * t.gflops) / o.peak_gflops), null));
    lines.push(row('loss first / last', o && `${o.loss_first} / ${o.loss_last}`, t.loss_first && `${t.loss_first} / ${t.loss_last}`, null));
  }
  lines.push(`  bf16 peak ${o?.peak_gflops ?? '—'} GFLOP/s (${o?.peak_what ?? 'not measured'}); load ${run.loadavg_before.join(' ')} before, ${run.loadavg_after.join(' ')} after`);
  process.stdout.write(lines.join('\n') + '\n\n');
}

async function race(v) {
  const s = settings(v);
  const date = new Date().toISOString().slice(0, 10);
  const outPath = resolve(v.out ?? freshResultPath(`peer-llama-${date}${s.quick ? '-quick' : ''}`));
  const startedAt = new Date().toISOString();
  const uptime = sh('uptime', []);
  process.stderr.write(`llama-race: ${uptime}\n`);
  const runs = [];
  const write = (complete) => {
    const result = {
      bench: 'peer-race-llama', complete, started_at: startedAt, finished_at: new Date().toISOString(),
      machine: { cpu: os.cpus()[0]?.model, logical_cpus: os.cpus().length, uptime_start: uptime, uptime_end: sh('uptime', []) },
      versions: {
        node: process.version, ...gitVersions(),
        torch: runs.find((r) => r.theirs)?.theirs[0]?.torch ?? null,
      },
      settings: {
        shapes: s.shapes, layers: s.layers ?? 'full', rank: s.rank, alpha: 2 * s.rank, lora_dropout: LORA_DROPOUT, targets: TARGETS,
        batch: s.batch, seq: s.seq, warmup: s.warmup, steps: s.steps, threads: s.threads, seed: s.seed, torch_base: s.torchBase,
        ours: 'bf16 base (bf16 matmul inputs, f32 accumulation), LoRA/grads/AdamW f32', theirs: 'torch.autocast(cpu, bfloat16) around forward + loss',
        optimizer: { name: 'AdamW', lr: LR, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0 },
        data: 'one batch of random ids in [3, vocab), id 1 first, no padding, labels = ids, trained on at every step',
      },
      runs,
    };
    writeResult(outPath, result);
  };
  for (const shape of s.shapes) {
    const run = { shape, loadavg_before: loadavg() };
    if (s.sides.includes('ours')) {
      run.ours = await runChild(`ours ${shape}`, process.execPath, [fileURLToPath(import.meta.url), '--child', 'ours', '--shape', shape, '--rank', String(s.rank), ...common(s), ...(s.checkpointing ? ['--checkpointing'] : [])], { LORA_NUM_THREADS: String(s.threads) });
    }
    if (s.sides.includes('theirs')) {
      run.theirs = [];
      for (const base of s.torchBase) {
        const args = [PY_SCRIPT, '--shape', shape, '--rank', String(s.rank), '--alpha', String(2 * s.rank), '--dropout', String(LORA_DROPOUT),
          '--targets', TARGETS.join(','), '--dtype', 'bf16', '--base-dtype', base, '--lr', String(LR), ...common(s)];
        const t = await runChild(`pytorch ${shape} base ${base}`, PYTHON, args, { OMP_NUM_THREADS: String(s.threads), MKL_NUM_THREADS: String(s.threads) });
        if (run.ours) {
          t.ratios = {
            tokens_per_s: ratio(run.ours.tokens_per_s, t.tokens_per_s),
            tokens_per_s_best_step: ratio(t.ms_per_step_min, run.ours.ms_per_step_min),
            peak_rss: ratio(run.ours.peak_rss_mb, t.peak_rss_mb),
          };
          t.pct_of_ours_peak = run.ours.peak_gflops ? round((100 * t.gflops) / run.ours.peak_gflops) : null;
          t.targets = { tokens_per_s_ge_2x: t.ratios.tokens_per_s >= 2, peak_rss_le_0_25x: t.ratios.peak_rss <= 0.25 };
        }
        run.theirs.push(t);
      }
    }
    run.loadavg_after = loadavg();
    runs.push(run);
    printRun(run, s);
    write(false);
  }
  write(true);
  process.stdout.write(`wrote ${outPath}\n`);
}

const { values } = parseArgs({ options: OPTIONS, allowPositionals: false });
if (values.help) process.stdout.write(HELP);
else if (values.child === 'ours') await runOurs(values);
else if (values.child) throw new Error(`unknown --child ${values.child}`);
else await race(values);
