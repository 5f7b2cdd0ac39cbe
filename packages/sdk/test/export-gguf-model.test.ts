// What the GGUF model/adapter export writes, read back with the independent reader: llama.cpp's
// keys and tensor names, hyperparameters, tokenizer metadata, llama's q/k row permutation (and none
// for qwen3), llama3 rope factors, stored types per tensor, the adapter's names/shapes/alpha and the
// Ollama Modelfile. llama.cpp itself loading these files is export-llamacpp.test.ts.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { exportModel } from '../src/export/export-model.js';
import { readGguf, ggufTensorF32, ggufValue, type GgufFile } from '../src/export/gguf-reader.js';
import { SafetensorsFile } from '../src/io/safetensors-reader.js';
import { makeTinyAdapter, makeTinyModel } from './export-tiny-models.js';

const dir = await mkdtemp(join(tmpdir(), 'gguf-model-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const load = async (p: string) => readGguf(new Uint8Array(await readFile(p)));
const hfTensor = async (folder: string, name: string, file = 'model.safetensors') => {
  const f = await SafetensorsFile.open(join(folder, file));
  try { return (await f.read(name)).data as Float32Array; } finally { await f.close(); }
};
const typeOf = (f: GgufFile, name: string) => f.tensors.find((t) => t.name === name)?.type;

describe('GGUF model export', () => {
  it('llama (llama3 tokenizer, untied, llama3 rope) with a separate rsLoRA adapter GGUF and a Modelfile', async () => {
    const hf = await makeTinyModel(join(dir, 'llama-hf'), 'llama', 5);
    const adapter = await makeTinyAdapter(join(dir, 'llama-lora'), hf, { r: 8, alpha: 16, rslora: true });
    const out = join(dir, 'llama-out');
    const r = await exportModel({ model: hf, adapter, adapterOnly: true, format: 'gguf', dtype: 'f32', out });
    expect(r.files.map((f) => f.name)).toEqual(['model.gguf', 'adapter.gguf', 'Modelfile']);
    const m = await load(join(out, 'model.gguf'));
    const v = (k: string) => ggufValue(m, k);
    expect([v('general.architecture'), v('general.type'), v('general.file_type')]).toEqual(['llama', 'model', 0]);
    expect([v('llama.block_count'), v('llama.context_length'), v('llama.embedding_length'), v('llama.feed_forward_length')]).toEqual([2, 256, 64, 96]);
    expect([v('llama.attention.head_count'), v('llama.attention.head_count_kv'), v('llama.rope.dimension_count'), v('llama.vocab_size')]).toEqual([4, 2, 16, 128256]);
    expect(v('llama.attention.layer_norm_rms_epsilon')).toBe(Math.fround(1e-5));
    expect(v('llama.rope.freq_base')).toBe(500000);
    expect(m.metadata.get('llama.attention.key_length')).toBeUndefined(); // head_dim not spelled out in config.json
    // Tokenizer: byte-level BPE with llama.cpp's name for Llama 3's pre-tokenizer.
    expect([v('tokenizer.ggml.model'), v('tokenizer.ggml.pre')]).toEqual(['gpt2', 'llama-bpe']);
    const tokens = v('tokenizer.ggml.tokens') as string[];
    const types = v('tokenizer.ggml.token_type') as number[];
    expect(tokens.length).toBe(128256);
    expect([tokens[0], tokens[128000], tokens[128009]]).toEqual(['!', '<|begin_of_text|>', '<|eot_id|>']);
    expect([types[0], types[128000]]).toEqual([1, 3]); // normal, control
    expect((v('tokenizer.ggml.merges') as string[]).length).toBe(280147);
    expect((v('tokenizer.ggml.merges') as string[])[0]).toBe('Ġ Ġ');
    expect([v('tokenizer.ggml.bos_token_id'), v('tokenizer.ggml.eos_token_id'), v('tokenizer.ggml.add_bos_token')]).toEqual([128000, 128001, false]);
    expect(v('tokenizer.chat_template')).toContain('<|start_header_id|>');
    // Tensors: names, llama3 rope factors, untied head, 1-D tensors in f32.
    const names = m.tensors.map((t) => t.name);
    expect(names.slice(0, 3)).toEqual(['rope_freqs.weight', 'token_embd.weight', 'blk.0.attn_norm.weight']);
    expect(names).toEqual(expect.arrayContaining(['blk.1.ffn_down.weight', 'blk.1.attn_output.weight', 'output_norm.weight', 'output.weight']));
    expect(names.length).toBe(1 + 1 + 2 * 9 + 2);
    const factors = Array.from(ggufTensorF32(m, 'rope_freqs.weight'));
    // head_dim 16, theta 5e5, original context 64 (wavelengths < 16 kept, > 64 scaled by 8, smoothed between).
    expect(factors[0]).toBe(1);
    expect(factors.at(-1)).toBe(8);
    expect(factors.some((f) => f > 1 && f < 8)).toBe(true);
    // q/k rows reordered from rotate-half to ggml's adjacent pairs: GGUF row h*hd + 2j + s = HF row h*hd + s*hd/2 + j.
    for (const [hfName, g, heads] of [['model.layers.0.self_attn.q_proj.weight', 'blk.0.attn_q.weight', 4], ['model.layers.1.self_attn.k_proj.weight', 'blk.1.attn_k.weight', 2]] as const) {
      const want = await hfTensor(hf, hfName);
      const got = ggufTensorF32(m, g);
      const hd = 16;
      for (let h = 0; h < heads; h++) for (let j = 0; j < hd / 2; j++) for (let s = 0; s < 2; s++) {
        const gr = h * hd + 2 * j + s;
        const hr = h * hd + s * (hd / 2) + j;
        expect(Array.from(got.subarray(gr * 64, gr * 64 + 64))).toEqual(Array.from(want.subarray(hr * 64, hr * 64 + 64)));
      }
    }
    expect(Array.from(ggufTensorF32(m, 'blk.0.attn_v.weight'))).toEqual(Array.from(await hfTensor(hf, 'model.layers.0.self_attn.v_proj.weight')));

    const a = await load(join(out, 'adapter.gguf'));
    expect([ggufValue(a, 'general.type'), ggufValue(a, 'adapter.type'), ggufValue(a, 'general.architecture')]).toEqual(['adapter', 'lora', 'llama']);
    // rsLoRA scale alpha/sqrt(r) = 16/sqrt(8); llama.cpp applies alpha'/r, so alpha' = 16*sqrt(8).
    expect(ggufValue<number>(a, 'adapter.lora.alpha')).toBeCloseTo(16 * Math.sqrt(8), 4);
    expect(a.tensors.length).toBe(2 * 7 * 2);
    const t = (n: string) => a.tensors.find((x) => x.name === n)!;
    expect([t('blk.0.attn_q.weight.lora_a').ne, t('blk.0.attn_q.weight.lora_b').ne]).toEqual([[64, 8], [8, 64]]);
    expect([t('blk.1.ffn_down.weight.lora_a').ne, t('blk.1.ffn_down.weight.lora_b').ne]).toEqual([[96, 8], [8, 64]]);
    expect([t('blk.0.attn_k.weight.lora_a').ne, t('blk.0.attn_k.weight.lora_b').ne]).toEqual([[64, 8], [8, 32]]);
    // B's rows follow W's permutation; A is untouched.
    const bq = await hfTensor(adapter, 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', 'adapter_model.safetensors');
    const gq = ggufTensorF32(a, 'blk.0.attn_q.weight.lora_b');
    expect(Array.from(gq.subarray(1 * 8, 2 * 8))).toEqual(Array.from(bq.subarray(8 * 8, 9 * 8))); // row 1 = HF row hd/2 = 8

    const modelfile = await readFile(join(out, 'Modelfile'), 'utf8');
    expect(modelfile).toMatch(/^FROM \.\/model\.gguf\nADAPTER \.\/adapter\.gguf\nTEMPLATE """\{\{- range \.Messages \}\}<\|start_header_id\|>/);
    expect(modelfile).toContain('PARAMETER stop "<|eot_id|>"');
    expect(modelfile).toContain('PARAMETER stop "<|end_of_text|>"');
  });

  it('qwen3 at q8_0: QK-norm, explicit head_dim, tied head, no permutation, 1-D tensors kept f32', async () => {
    const hf = await makeTinyModel(join(dir, 'qwen3-hf'), 'qwen3', 6);
    const out = join(dir, 'qwen3-out');
    await exportModel({ model: hf, format: 'gguf', dtype: 'q8_0', out });
    const m = await load(join(out, 'model.gguf'));
    const v = (k: string) => ggufValue(m, k);
    expect([v('general.architecture'), v('general.file_type'), v('general.quantization_version')]).toEqual(['qwen3', 7, 2]);
    expect([v('qwen3.attention.key_length'), v('qwen3.attention.value_length'), v('qwen3.rope.dimension_count')]).toEqual([32, 32, 32]);
    expect([v('tokenizer.ggml.pre'), v('tokenizer.ggml.eos_token_id'), v('tokenizer.ggml.padding_token_id'), v('tokenizer.ggml.add_bos_token')]).toEqual(['qwen2', 151645, 151643, false]);
    expect(m.metadata.get('tokenizer.ggml.bos_token_id')).toBeUndefined(); // Qwen3 has none
    const tokens = v('tokenizer.ggml.tokens') as string[];
    expect([tokens.length, tokens[151669], tokens[151935]]).toEqual([151936, '[PAD151669]', '[PAD151935]']);
    expect((v('tokenizer.ggml.token_type') as number[])[151700]).toBe(5); // unused
    const names = m.tensors.map((t) => t.name);
    expect(names).toContain('blk.0.attn_q_norm.weight');
    expect(names).not.toContain('output.weight'); // tied: llama.cpp reuses token_embd
    expect(names).not.toContain('rope_freqs.weight');
    expect([typeOf(m, 'token_embd.weight'), typeOf(m, 'blk.0.attn_q.weight'), typeOf(m, 'blk.0.attn_q_norm.weight'), typeOf(m, 'output_norm.weight')]).toEqual([8, 8, 0, 0]);
    // No rope permutation for qwen3: q_proj dequantizes to HF's rows within q8_0's error.
    const want = await hfTensor(hf, 'model.layers.0.self_attn.q_proj.weight');
    const got = ggufTensorF32(m, 'blk.0.attn_q.weight');
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    expect(worst).toBeLessThan(0.02); // |w| <~ 0.6 here: d = amax/127 <~ 5e-3, error <= d/2 + f16 scale
    const modelfile = await readFile(join(out, 'Modelfile'), 'utf8');
    expect(modelfile).toMatch(/^FROM \.\/model\.gguf\nTEMPLATE """\{\{- range \.Messages \}\}<\|im_start\|>/);
    expect(modelfile).toContain('PARAMETER stop "<|im_end|>"');
  });
});
