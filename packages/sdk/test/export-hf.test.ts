// `--format hf`: merged folders that our loader reads back with the logits of base + adapter,
// sharded above a size, from a quantized base with the cost measured; and the export's refusals
// (an adapter for another base, a GGUF-only dtype, OPT to GGUF, an existing --out), each leaving
// nothing behind.
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { exportModel } from '../src/export/export-model.js';
import { AutoModelForCausalLM } from '../src/models/auto.js';
import type { CausalLM } from '../src/models/causal-lm.js';
import { SafetensorsFile } from '../src/io/safetensors-reader.js';
import { writeSafetensors } from '../src/io/safetensors-writer.js';
import type { RawTensor } from '../src/io/tensor.js';
import { gaussian, hasTorch, makeTinyAdapter, tokenizerPackage, torchReference } from './export-tiny-models.js';

const FIX = join(import.meta.dirname, 'fixtures/opt-tiny-preln');
const dir = await mkdtemp(join(tmpdir(), 'export-hf-'));
const torch = await hasTorch();
afterAll(() => rm(dir, { recursive: true, force: true }));

function logits(m: CausalLM, ids: Int32Array, B: number, T: number): Float32Array {
  const out = new Float32Array(B * T * m.config.vocabSize);
  m.step({ batch: B, seq: T, inputIds: ids, labels: new Int32Array(B * T).fill(-100) }, { training: false, logits: out });
  return out;
}

const relErr = (a: Float32Array, b: Float32Array) => {
  let se = 0;
  let ss = 0;
  for (let i = 0; i < a.length; i++) { se += (a[i] - b[i]) ** 2; ss += b[i] ** 2; }
  return Math.sqrt(se / ss);
};

/** A llama-shaped folder with a small vocab (no tokenizer: the hf path copies tensors, it needs none). */
async function smallLlama(out: string): Promise<string> {
  const g = gaussian(3);
  const t = new Map<string, RawTensor>();
  const r = (shape: number[], std: number, mean = 0): RawTensor => ({ dtype: 'F32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => mean + std * g()) });
  t.set('model.embed_tokens.weight', r([300, 64], 1));
  for (let i = 0; i < 2; i++) {
    const p = `model.layers.${i}.`;
    for (const n of ['input_layernorm', 'post_attention_layernorm']) t.set(`${p}${n}.weight`, r([64], 0.1, 1));
    t.set(`${p}self_attn.q_proj.weight`, r([64, 64], 0.125));
    t.set(`${p}self_attn.k_proj.weight`, r([32, 64], 0.125));
    t.set(`${p}self_attn.v_proj.weight`, r([32, 64], 0.125));
    t.set(`${p}self_attn.o_proj.weight`, r([64, 64], 0.125));
    t.set(`${p}mlp.gate_proj.weight`, r([96, 64], 0.125));
    t.set(`${p}mlp.up_proj.weight`, r([96, 64], 0.125));
    t.set(`${p}mlp.down_proj.weight`, r([64, 96], 0.1));
  }
  t.set('model.norm.weight', r([64], 0.1, 1));
  t.set('lm_head.weight', r([300, 64], 0.5));
  await mkdir(out, { recursive: true });
  await writeSafetensors(join(out, 'model.safetensors'), t, { format: 'pt' });
  await writeFile(join(out, 'config.json'), JSON.stringify({
    model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: 300, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 128, tie_word_embeddings: false, torch_dtype: 'float32',
  }));
  return out;
}

describe('hf export', () => {
  it('OPT + adapter: sharded merged folder that our loader reads with the logits of base + adapter', async () => {
    const out = join(dir, 'opt-merged');
    const r = await exportModel({ model: join(FIX, 'model'), adapter: join(FIX, 'adapter'), format: 'hf', out, maxShardBytes: 16 * 1024 });
    const names = (await readdir(out)).sort();
    expect(names).toContain('model.safetensors.index.json');
    expect(names.filter((n) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(n)).length).toBeGreaterThan(1);
    expect(names).toContain('config.json');
    expect(names).toContain('generation_config.json');
    expect(r.files.map((f) => f.name)).toEqual(expect.arrayContaining(['config.json', 'model.safetensors.index.json']));
    const ids = Int32Array.from({ length: 2 * 12 }, (_, i) => 3 + ((i * 37) % 260));
    const merged = await AutoModelForCausalLM.fromPretrained(out, { device: 'cpu' });
    const ref = await AutoModelForCausalLM.fromPretrained(join(FIX, 'model'), { device: 'cpu' });
    try {
      await ref.loadAdapter(join(FIX, 'adapter'));
      // f32 throughout; the merge adds scale·B·A in a different order than the LoRA branch sums it.
      expect(relErr(logits(merged, ids, 2, 12), logits(ref, ids, 2, 12))).toBeLessThan(1e-5);
    } finally {
      merged.dispose();
      ref.dispose();
    }
  });

  it('a quantized base is dequantized before the merge, and the export reports the logits error', async () => {
    const out = join(dir, 'opt-nf4');
    const r = await exportModel({ model: join(FIX, 'model'), adapter: join(FIX, 'adapter'), format: 'hf', out, baseDtype: 'nf4', dtype: 'bf16' });
    const q = r.quantization!;
    expect(q.baseDtype).toBe('nf4');
    // NF4 keeps ~4 bits per weight (block 64): a real, bounded error, neither zero nor garbage.
    expect(q.relRmsLogitError).toBeGreaterThan(1e-4);
    expect(q.relRmsLogitError).toBeLessThan(0.5);
    const f = await SafetensorsFile.open(join(out, 'model.safetensors'));
    expect(f.info('model.decoder.layers.0.self_attn.q_proj.weight').dtype).toBe('BF16');
    await f.close();
    console.log(`nf4 base merge: logits max |Δ| ${q.maxAbsLogitError.toExponential(2)}, rel RMS ${q.relRmsLogitError.toExponential(2)}`);
  });

  it.skipIf(!torch)('llama-shaped folder: the merged export computes what base + adapter computes (PyTorch forward)', async () => {
    const hf = await smallLlama(join(dir, 'llama-hf'));
    const adapter = await makeTinyAdapter(join(dir, 'llama-lora'), hf, { r: 4, alpha: 8, rslora: true });
    const out = join(dir, 'llama-merged');
    await exportModel({ model: hf, adapter, format: 'hf', out });
    const ids = [5, 17, 42, 99, 150, 7];
    const want = await torchReference(hf, ids, join(dir, 'want.json'), { lora: { adapter } }, 4);
    const got = await torchReference(out, ids, join(dir, 'got.json'), { base: {} }, 4);
    expect(got.base.greedy).toEqual(want.lora.greedy);
    const d = got.base.logits.map((v, i) => Math.abs(v - want.lora.logits[i]));
    expect(Math.max(...d)).toBeLessThan(1e-4); // f32 storage of W + scale·B·A against float64
    // The export is a plain folder: no adapter names, the same tensor names as the base.
    const f = await SafetensorsFile.open(join(out, 'model.safetensors'));
    expect(f.keys().sort()).toEqual((await SafetensorsFile.open(join(hf, 'model.safetensors'))).keys().sort());
    await f.close();
  });

  it('refuses bad input with a coded error and leaves nothing under --out', async () => {
    const base = join(FIX, 'model');
    const llama = await smallLlama(join(dir, 'llama-hf2'));
    const optAdapter = join(FIX, 'adapter');
    const out = join(dir, 'refused');
    await expect(exportModel({ model: llama, adapter: optAdapter, format: 'hf', out })).rejects.toMatchObject({ code: 'E_WEIGHTS_MISMATCH', message: expect.stringMatching(/another base/) });
    await expect(exportModel({ model: base, format: 'hf', dtype: 'q8_0', out })).rejects.toMatchObject({ code: 'E_DTYPE', message: expect.stringMatching(/--format gguf/) });
    await expect(exportModel({ model: base, format: 'gguf', out })).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(/OPT cannot be exported to GGUF.*--format hf/) });
    await expect(exportModel({ model: llama, format: 'gguf', out })).rejects.toMatchObject({ code: 'E_TOKENIZER' });
    expect((await readdir(dir)).filter((n) => n.includes('refused'))).toEqual([]);
    // An existing --out is refused unless --force; with it, replaced whole.
    const existing = join(dir, 'existing');
    await cp(join(FIX, 'adapter'), existing, { recursive: true });
    await expect(exportModel({ model: base, format: 'hf', out: existing })).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(/--force/) });
    expect((await readdir(existing)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    await exportModel({ model: base, format: 'hf', out: existing, force: true });
    expect((await readdir(existing)).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    expect(JSON.parse(await readFile(join(existing, 'config.json'), 'utf8')).torch_dtype).toBe('float32');
    // A failure after staging began (a tokenizer for a bigger vocab than the model's) leaves the old
    // --out as it was, even with --force.
    const tok = join(dir, 'llama-tok');
    await cp(llama, tok, { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await cp(join(tokenizerPackage('llama3'), 'models', f), join(tok, f));
    await expect(exportModel({ model: tok, format: 'gguf', out: existing, force: true })).rejects.toMatchObject({ code: 'E_TOKENIZER', message: expect.stringMatching(/vocab_size 300/) });
    expect((await readdir(existing)).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    expect((await readdir(dir)).filter((n) => n.endsWith('.partial') || n.endsWith('.old'))).toEqual([]);
  });
});
