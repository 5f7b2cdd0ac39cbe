// The Llama-shaped families (llama with GQA, an untied head and llama3 rope scaling; qwen2 with q/k/v
// biases and one KV head; qwen3 with QK-norm and an explicit head_dim) against an independent
// float64 reference of transformers' eager forward + PEFT LoRA (llama-reference.ts): logits and loss
// (a left-padded row included), LoRA grads against central finite differences of the reference
// loss (on ref, cpu and the CUDA emulator), greedy decoding through the KV cache against the full
// forward, adapter and merged round trips, and the refusals. f32 tolerance: rel 1e-4 on
// logits/loss (f32 sums over K <= 32), 2e-3 on grads (f32 backward vs f64 differences with
// h = 1e-3, truncation ~1e-6).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { native } from '@lora/core-native';
import { describe, expect, it } from 'vitest';

import { adapterTensors, AutoModelForCausalLM, exportMerged, expandParams, LLAMA_PARAMS, LlamaForCausalLM, OptForCausalLM, paramShapes, parseLlamaConfig } from '../src/index.js';
import { randomWeights, referenceForward, writeModel, type Lora, type Weights } from './llama-reference.js';

const tmp = mkdtempSync(join(tmpdir(), 'lora-llama-'));
const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const base = { hidden_act: 'silu', rms_norm_eps: 1e-5, max_position_embeddings: 64, bos_token_id: 1, eos_token_id: 2, num_hidden_layers: 2, vocab_size: 40 };
const CONFIGS: Record<string, Record<string, unknown>> = {
  llama: {
    ...base, model_type: 'llama', hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 24, tie_word_embeddings: false,
    rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 }, torch_dtype: 'float32',
  },
  qwen2: {
    ...base, model_type: 'qwen2', hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 1, intermediate_size: 20, tie_word_embeddings: true,
    rope_parameters: { rope_type: 'default', rope_theta: 1000 }, dtype: 'bfloat16',
  },
  qwen3: {
    ...base, model_type: 'qwen3', hidden_size: 16, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, intermediate_size: 24, tie_word_embeddings: true, rope_theta: 10000,
  },
};
const B = 2;
const T = 7;
// Row 1 is left-padded (HF's generate layout): positions follow the mask.
const ids = [1, 5, 9, 13, 17, 21, 25, 0, 0, 1, 30, 3, 8, 11];
const mask = [1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1];
const labels = ids.map((id, i) => (mask[i] ? id : -100));

function model(name: string): { dir: string; weights: Weights } {
  const dir = join(tmp, name);
  const config = parseLlamaConfig(CONFIGS[name]);
  const shapes = paramShapes(expandParams(LLAMA_PARAMS, config));
  const weights = randomWeights(shapes, name.length * 7 + 1);
  writeModel(dir, CONFIGS[name], weights, shapes);
  return { dir, weights };
}
const models = Object.fromEntries(Object.keys(CONFIGS).map((n) => [n, model(n)]));

/** The model's adapter as the reference's LoRA (A/B read back from native memory). */
function refLora(m: LlamaForCausalLM): Lora {
  const mods = new Map<string, { a: Float64Array; b: Float64Array }>();
  for (const [key, t] of adapterTensors(m.lora!)) {
    const [, layer, target, which] = /layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_(A|B)/.exec(key)!;
    const mod = mods.get(`${layer}.${target}`) ?? { a: new Float64Array(), b: new Float64Array() };
    mod[which === 'A' ? 'a' : 'b'] = Float64Array.from(t.data as Float32Array);
    mods.set(`${layer}.${target}`, mod);
  }
  return { scale: m.lora!.scale, r: m.lora!.r, mods };
}

const rel = (got: ArrayLike<number>, want: ArrayLike<number>, keep = (_: number) => true) => {
  let err = 0;
  let ref = 0;
  for (let i = 0; i < want.length; i++) {
    if (!keep(i)) continue;
    err = Math.max(err, Math.abs(got[i] - want[i]));
    ref = Math.max(ref, Math.abs(want[i]));
  }
  return err / ref;
};
const backends = native().backends().filter((b) => b.usable && b.name !== 'cuda').map((b) => b.name as 'ref' | 'cpu' | 'emu');

describe.each(Object.keys(CONFIGS))('%s family', (name) => {
  it.each(backends)('matches the float64 reference: logits, loss and every LoRA grad (%s, f32)', async (device) => {
    using m = await LlamaForCausalLM.fromPretrained(models[name].dir, { device });
    expect(m.modelType).toBe(name);
    m.addLora({ r: 2, alpha: 4, targetModules: ['all-linear'], initLoraWeights: false, seed: 3 });
    expect(m.lora!.targets.length).toBe(7);
    const V = m.config.vocabSize;
    const logits = new Float32Array(B * T * V);
    const r = m.step({ batch: B, seq: T, inputIds: Int32Array.from(ids), attentionMask: Int32Array.from(mask), labels: Int32Array.from(labels) }, { backward: true, logits });
    const lora = refLora(m);
    const want = referenceForward(m.config, models[name].weights, lora, ids, mask, labels, B, T);
    const realRow = (i: number) => mask[Math.floor(i / V)] === 1;
    const logitErr = rel(logits, want.logits, realRow);
    console.log(`${name} ${device}: logits rel ${logitErr.toExponential(2)}, loss ${r.loss} vs ${want.loss}`);
    expect(logitErr).toBeLessThan(1e-4);
    expect(Math.abs(r.loss - want.loss) / want.loss).toBeLessThan(1e-4);
    // LoRA grads against central differences of the reference loss: 6 entries spread over every
    // A and B of both layers (all 1000-odd entries take ~10 s per case and catch nothing more).
    const grads = adapterTensors(m.lora!, 'grads');
    let worst = 0;
    for (const [key, g] of grads) {
      const [, layer, target, which] = /layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_(A|B)/.exec(key)!;
      const p = lora.mods.get(`${layer}.${target}`)![which === 'A' ? 'a' : 'b'];
      const picked = Array.from({ length: 6 }, (_, j) => Math.floor(((j + 0.5) * p.length) / 6));
      const got = picked.map((i) => (g.data as Float32Array)[i]);
      const fd = new Float64Array(picked.length);
      for (const [n, i] of picked.entries()) {
        const keep = p[i];
        p[i] = keep + 1e-3;
        const up = referenceForward(m.config, models[name].weights, lora, ids, mask, labels, B, T).loss;
        p[i] = keep - 1e-3;
        const down = referenceForward(m.config, models[name].weights, lora, ids, mask, labels, B, T).loss;
        p[i] = keep;
        fd[n] = (up - down) / 2e-3;
      }
      worst = Math.max(worst, rel(got, fd));
    }
    console.log(`${name} ${device}: ${grads.size} LoRA grads, worst rel ${worst.toExponential(2)}`);
    expect(grads.size).toBe(2 * 7 * 2);
    expect(worst).toBeLessThan(2e-3);
  });

  it('decodes through its KV cache token for token like the full forward, and round-trips adapters and merges', async () => {
    using m = await AutoModelForCausalLM.fromPretrained(models[name].dir, { device: 'cpu' });
    expect(m).toBeInstanceOf(LlamaForCausalLM);
    m.addLora({ r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj', 'down_proj'], initLoraWeights: false, seed: 5 });
    const prompt = [1, 7, 3, 12];
    const g = await m.generate(prompt, { maxNewTokens: 8, stopTokens: [] });
    const seq = [...prompt, ...g.tokens.slice(0, -1)];
    const V = m.config.vocabSize;
    const full = new Float32Array(seq.length * V);
    m.step({ batch: 1, seq: seq.length, inputIds: Int32Array.from(seq) }, { logits: full });
    g.tokens.forEach((tok, i) => {
      const row = full.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
      expect(tok).toBe(row.indexOf(Math.max(...row)));
    });
    // Adapter out and back in; merged export loads as a plain model with the same logits.
    const adapterDir = join(tmp, `${name}-adapter`);
    await m.saveAdapter(adapterDir);
    using back = await AutoModelForCausalLM.fromPretrained(models[name].dir, { device: 'cpu' });
    await back.loadAdapter(adapterDir);
    const l2 = new Float32Array(seq.length * V);
    back.step({ batch: 1, seq: seq.length, inputIds: Int32Array.from(seq) }, { logits: l2 });
    expect(Array.from(l2)).toEqual(Array.from(full));
    const mergedDir = join(tmp, `${name}-merged`);
    await exportMerged(m, mergedDir);
    using merged = await AutoModelForCausalLM.fromPretrained(mergedDir, { device: 'cpu' });
    const l3 = new Float32Array(seq.length * V);
    merged.step({ batch: 1, seq: seq.length, inputIds: Int32Array.from(seq) }, { logits: l3 });
    expect(rel(l3, full)).toBeLessThan(1e-5);
  });
});

describe('Llama-shaped bases in other formats', () => {
  const batch = { batch: B, seq: T, inputIds: Int32Array.from(ids), attentionMask: Int32Array.from(mask), labels: Int32Array.from(labels) };
  it('recomputes with activation checkpointing to the same bits, and round-trips a quantized base', async () => {
    const run = async (dtype: 'f32' | 'bf16' | 'nf4', checkpointing: boolean) => {
      using m = await LlamaForCausalLM.fromPretrained(models.qwen3.dir, { device: 'cpu', dtype });
      m.addLora({ r: 2, alpha: 4, targetModules: ['all-linear'], initLoraWeights: false, seed: 9, dropout: 0.1 });
      const r = m.step(batch, { training: true, seed: 4, backward: true, checkpointing });
      return { loss: r.loss, grads: [...adapterTensors(m.lora!, 'grads').values()].flatMap((t) => Array.from(t.data as Float32Array)) };
    };
    const full = await run('f32', false);
    const ck = await run('f32', true);
    expect(ck.loss).toBe(full.loss);
    expect(ck.grads).toEqual(full.grads);
    // A bf16 base (autocast) and an NF4 base stay near the f32 loss: measured 7.6e-4 and 1.2e-2 rel.
    for (const [dtype, bound] of [['bf16', 1e-2], ['nf4', 1e-1]] as const) {
      const q = await run(dtype, false);
      console.log(`qwen3 ${dtype}: loss ${q.loss} vs f32 ${full.loss}`);
      expect(Math.abs(q.loss - full.loss) / full.loss).toBeLessThan(bound);
      expect(q.loss).not.toBe(full.loss);
    }
    using q = await LlamaForCausalLM.fromPretrained(models.llama.dir, { device: 'cpu', dtype: 'nf4' });
    const dir = join(tmp, 'llama-nf4');
    await q.saveQuantized(dir);
    using back = await AutoModelForCausalLM.fromPretrained(dir, { device: 'cpu' });
    expect(back.weights.dtype).toBe('nf4');
    const a = new Float32Array(B * T * q.config.vocabSize);
    const b = new Float32Array(a.length);
    q.step(batch, { logits: a });
    back.step(batch, { logits: b });
    expect(Array.from(b)).toEqual(Array.from(a));
    // A merge from the quantized base exports a plain f32 model (no quantization_config left behind).
    back.addLora({ r: 2, alpha: 4, targetModules: ['o_proj'], initLoraWeights: false });
    const mergedDir = join(tmp, 'llama-nf4-merged');
    await exportMerged(back, mergedDir);
    expect(JSON.parse(readFileSync(join(mergedDir, 'config.json'), 'utf8')).quantization_config).toBeUndefined();
    using merged = await AutoModelForCausalLM.fromPretrained(mergedDir, { device: 'cpu' });
    expect(merged.weights.dtype).toBe('f32');
  });
});

describe('Llama-shaped configs and adapters that cannot work are refused', () => {
  it('names the problem', async () => {
    expect(() => parseLlamaConfig({ ...CONFIGS.llama, num_key_value_heads: 3 })).toThrow(/num_attention_heads 4 is not a multiple of num_key_value_heads 3/);
    expect(() => parseLlamaConfig({ ...CONFIGS.llama, rope_scaling: { rope_type: 'yarn', factor: 2 } })).toThrow(/rope_scaling type "yarn" is not supported/);
    expect(() => parseLlamaConfig({ ...CONFIGS.qwen3, hidden_act: 'gelu' })).toThrow(/hidden_act "gelu"/);
    expect(() => parseLlamaConfig({ ...CONFIGS.qwen3, num_hidden_layers: 1e12 })).toThrow(expect.objectContaining({ code: 'E_CONFIG', field: 'num_hidden_layers' }));
    // An OPT adapter on fc1: a module Llama-shaped models do not have.
    const dir = join(tmp, 'opt-adapter');
    {
      using opt = await OptForCausalLM.fromPretrained(join(fixtures, 'opt-tiny-preln', 'model'), { device: 'cpu' });
      opt.addLora({ r: 2, alpha: 4, targetModules: ['q_proj', 'fc1'] });
      await opt.saveAdapter(dir);
    }
    using m = await LlamaForCausalLM.fromPretrained(models.llama.dir, { device: 'cpu' });
    await expect(m.loadAdapter(dir)).rejects.toMatchObject({ code: 'E_CONFIG', message: /"fc1" is not one of this model's q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/ });
    expect(() => m.addLora({ r: 2, alpha: 4, targetModules: ['out_proj'] })).toThrow(/unknown LoRA target 'out_proj'/);
  });
});
