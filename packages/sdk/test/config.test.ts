import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  assertOptWeights, checkOptWeights, expectedOptWeights, loadOptConfig, openOptCheckpoint, optConfigToJson, parseOptConfig,
  shapesOf, writeOptModel, type OptConfig,
} from '../src/config/index.js';
import { LoraError, SafetensorsFile, type RawTensor } from '../src/io/index.js';

const OPT350M_DIR = fileURLToPath(new URL('../../../../shared/data/opt-tokenizer/', import.meta.url));

const tiny = (extra: Record<string, unknown> = {}) => parseOptConfig({
  model_type: 'opt', vocab_size: 64, hidden_size: 16, num_hidden_layers: 2, ffn_dim: 32, num_attention_heads: 4,
  max_position_embeddings: 32, ...extra,
});

describe('OPT config', () => {
  it('fills transformers defaults', () => {
    const c = parseOptConfig({ model_type: 'opt' });
    expect(c).toMatchObject({
      vocabSize: 50272, hiddenSize: 768, numHiddenLayers: 12, ffnDim: 3072, numAttentionHeads: 12, headDim: 64,
      maxPositionEmbeddings: 2048, wordEmbedProjDim: 768, doLayerNormBefore: true, activationFunction: 'relu',
      padTokenId: 1, bosTokenId: 2, eosTokenId: 2, enableBias: true, layerNormElementwiseAffine: true, dropout: 0.1,
    });
  });

  it.skipIf(!existsSync(join(OPT350M_DIR, 'config.json')))('reads opt-350m\'s config.json (post-LN, 512-wide embeddings)', async () => {
    const c = await loadOptConfig(OPT350M_DIR);
    expect(c).toMatchObject({ hiddenSize: 1024, wordEmbedProjDim: 512, doLayerNormBefore: false, numHiddenLayers: 24, torchDtype: 'float16' });
    expect(parseOptConfig(optConfigToJson(c))).toEqual(c);
  });

  it('refuses other model types and lists every invalid field at once', () => {
    expect(() => parseOptConfig({ model_type: 'llama' })).toThrow(/model_type is "llama", but only OPT/);
    try {
      parseOptConfig({ model_type: 'opt', hidden_size: 100, num_attention_heads: 12, activation_function: 'gelu', ffn_dim: -1, pad_token_id: 99999 });
      expect.unreachable();
    } catch (e) {
      expect((e as LoraError).code).toBe('E_CONFIG');
      const msg = (e as Error).message;
      for (const s of ['not divisible', 'gelu', 'ffn_dim', 'pad_token_id 99999']) expect(msg).toContain(s);
    }
  });

  it('names config.json when it is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-cfg-'));
    await expect(loadOptConfig(dir)).rejects.toMatchObject({ code: 'E_FILE_NOT_FOUND', message: expect.stringContaining('config.json') });
    await writeFile(join(dir, 'config.json'), '{"model_type": "opt",');
    await expect(loadOptConfig(dir)).rejects.toMatchObject({ code: 'E_CONFIG' });
    await rm(dir, { recursive: true });
  });
});

describe('OPT weight shapes', () => {
  it('lists the pre-LN layout (final layernorm, no projections)', () => {
    const w = expectedOptWeights(tiny());
    expect(w.get('decoder.embed_positions.weight')).toEqual([34, 16]);
    expect(w.get('decoder.final_layer_norm.weight')).toEqual([16]);
    expect(w.get('decoder.layers.1.fc1.weight')).toEqual([32, 16]);
    expect(w.get('decoder.layers.1.fc2.bias')).toEqual([16]);
    expect(w.has('decoder.project_in.weight')).toBe(false);
    expect(w.size).toBe(2 + 2 + 2 * 16);
  });

  it('lists opt-350m\'s post-LN layout (project_in/out, no final layernorm)', () => {
    const w = expectedOptWeights(tiny({ do_layer_norm_before: false, word_embed_proj_dim: 8 }));
    expect(w.get('decoder.embed_tokens.weight')).toEqual([64, 8]);
    expect(w.get('decoder.project_in.weight')).toEqual([16, 8]);
    expect(w.get('decoder.project_out.weight')).toEqual([8, 16]);
    expect(w.has('decoder.final_layer_norm.weight')).toBe(false);
    const noBias = expectedOptWeights(tiny({ enable_bias: false, layer_norm_elementwise_affine: false }));
    expect([...noBias.keys()].some((k) => k.endsWith('.bias') || k.includes('layer_norm'))).toBe(false);
  });

  it('accepts keys with or without model., and a tied lm_head', () => {
    const c = tiny();
    const bare = expectedOptWeights(c);
    expect(assertOptWeights(c, shapesOf(bare)).prefix).toBe('');
    const prefixed = new Map([...bare].map(([k, s]) => [`model.${k}`, s]));
    prefixed.set('lm_head.weight', [64, 16]);
    const r = assertOptWeights(c, shapesOf(prefixed));
    expect(r.prefix).toBe('model.');
    expect(r.lmHeadKey).toBe('lm_head.weight');
    expect(r.keyOf.get('decoder.layers.0.self_attn.q_proj.weight')).toBe('model.decoder.layers.0.self_attn.q_proj.weight');
  });

  it('reports every mismatch, missing and unexpected tensor', () => {
    const c = tiny();
    const w = new Map([...expectedOptWeights(c)].map(([k, s]) => [`model.${k}`, s]));
    w.set('model.decoder.layers.0.fc1.weight', [33, 16]);
    w.set('model.decoder.embed_tokens.weight', [65, 16]);
    w.delete('model.decoder.layers.1.self_attn.k_proj.bias');
    w.set('model.decoder.layers.2.fc1.weight', [32, 16]);
    const r = checkOptWeights(c, shapesOf(w));
    expect(r.mismatched.map((m) => m.name).sort()).toEqual(['decoder.embed_tokens.weight', 'decoder.layers.0.fc1.weight']);
    expect(r.missing).toEqual(['decoder.layers.1.self_attn.k_proj.bias']);
    expect(r.unexpected).toEqual(['model.decoder.layers.2.fc1.weight']);
    expect(() => assertOptWeights(c, shapesOf(w), 'tiny.safetensors')).toThrow(
      /tiny\.safetensors does not match its config \(4 problems\)[\s\S]*\[33, 16\], config expects \[32, 16\][\s\S]*config has 2 layers/,
    );
  });
});

/** Deterministic f32 weights of the right shapes: value = tensor index + position / 1000. */
function tinyWeights(c: OptConfig): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  [...expectedOptWeights(c)].forEach(([name, shape], t) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, i) => t + i / 1000);
    out.set(name, { dtype: 'F32', shape, data });
  });
  return out;
}

describe('OPT checkpoints on disk', () => {
  for (const layout of ['pre-LN', 'post-LN (opt-350m style)'] as const) {
    it(`writes a transformers-style folder and opens it back by canonical names (${layout})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'lora-ckpt-'));
      const c = layout === 'pre-LN' ? tiny() : tiny({ do_layer_norm_before: false, word_embed_proj_dim: 8 });
      const weights = tinyWeights(c);
      await writeOptModel(dir, c, weights);
      await using st = await SafetensorsFile.open(join(dir, 'model.safetensors'));
      expect(st.metadata).toEqual({ format: 'pt' });
      expect(st.keys().every((k) => k.startsWith('model.decoder.'))).toBe(true);

      await using ckpt = await openOptCheckpoint(dir);
      expect(ckpt.config).toEqual(c);
      for (const name of ['decoder.layers.1.fc2.weight', 'decoder.embed_positions.weight']) {
        expect((await ckpt.read(name)).data).toEqual(weights.get(name)!.data);
      }
      expect((await ckpt.read('lm_head.weight')).data).toEqual(weights.get('decoder.embed_tokens.weight')!.data);
      await expect(ckpt.read('decoder.layers.9.fc1.weight')).rejects.toMatchObject({ code: 'E_TENSOR_NOT_FOUND' });
      await rm(dir, { recursive: true });
    });
  }

  it('refuses weights that disagree with config.json, listing the problems', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-ckpt-'));
    await writeOptModel(dir, tiny(), tinyWeights(tiny()));
    await writeFile(join(dir, 'config.json'), JSON.stringify(optConfigToJson(tiny({ ffn_dim: 48, num_hidden_layers: 1 }))));
    const err = await openOptCheckpoint(dir).catch((e: unknown) => e as LoraError);
    expect(err).toMatchObject({ code: 'E_WEIGHTS_MISMATCH' });
    expect((err as Error).message).toMatch(/fc1\.weight: shape \[32, 16\], config expects \[48, 16\]/);
    expect((err as Error).message).toMatch(/unexpected tensor model\.decoder\.layers\.1\./);
    await rm(dir, { recursive: true });
  });
});
