// The base loader writes each checkpoint tensor into native memory a chunk of rows at a time
// (model/weights.ts writeRows), never as a whole f32 copy. These cases check that this changes
// nothing a model holds: a 1.3 M-entry embedding (two chunks of 2^20 values) loaded from f32, f16
// and bf16 storage into f32, f16, bf16 and int8 bases is bit for bit what converting the whole
// tensor at once gives, and a non-finite value in the second chunk is still refused with its index.
import { native, type NativeTensor } from '@lora/core-native';
import { describe, expect, it } from 'vitest';

import { LlamaForCausalLM, LLAMA_PARAMS, expandParams, paramShapes, parseLlamaConfig, type WeightSource } from '../src/index.js';

const config = parseLlamaConfig({
  model_type: 'llama', hidden_size: 320, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 5, num_key_value_heads: 5,
  vocab_size: 4100, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true, max_position_embeddings: 64,
});
const shapes = paramShapes(expandParams(LLAMA_PARAMS, config));
const EMBED = 'embed_tokens.weight';

/** Deterministic values with a wide spread of exponents (some f16 subnormals, some rounding ties). */
function values(name: string, n: number): Float32Array {
  const out = new Float32Array(n);
  let s = [...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) - 0.5) * 2 ** ((s % 24) - 14);
  }
  return out;
}

/** The checkpoint stored as `stored`: the same values, narrowed (once) where the format asks. */
function source(stored: 'F32' | 'F16' | 'BF16', poison?: { name: string; at: number }): WeightSource {
  const { Tensor } = native();
  const narrow = (v: Float32Array, shape: number[]) => {
    if (stored === 'F32') return v;
    using t = Tensor.fromArray(v, [v.length], stored === 'F16' ? 'f16' : 'bf16');
    const b = t.bytes();
    return new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  };
  return {
    keys: () => [...shapes.keys()],
    has: (n) => shapes.has(n),
    info: (n) => ({ dtype: stored, shape: shapes.get(n)! }),
    async read(n) {
      const shape = shapes.get(n)!;
      const data = narrow(values(n, shape.reduce((a, b) => a * b, 1)), shape);
      if (poison?.name === n) {
        if (data instanceof Float32Array) data[poison.at] = Number.POSITIVE_INFINITY;
        else data[poison.at] = stored === 'BF16' ? 0x7fc0 : 0x7e00; // NaN
      }
      return { dtype: stored, shape, data };
    },
    async close() {},
  };
}

/** What converting the whole stored tensor at once gives in `dtype` (the loader's old path). */
async function whole(stored: 'F32' | 'F16' | 'BF16', dtype: 'f32' | 'f16' | 'bf16'): Promise<Uint8Array> {
  const raw = await source(stored).read(EMBED);
  const { Tensor } = native();
  using widened = stored === 'F32' ? Tensor.fromArray(raw.data as Float32Array, raw.shape, 'f32') : Tensor.fromArray(raw.data as Uint16Array, raw.shape, stored === 'F16' ? 'f16' : 'bf16');
  using asF32 = Tensor.fromArray(widened.toArray() as Float32Array, raw.shape, dtype);
  return asF32.bytes();
}

const weightsOf = (m: LlamaForCausalLM) => (m as unknown as { weights: { embed: NativeTensor; lmHead: NativeTensor } }).weights;

describe('base loader: chunked conversion', () => {
  it('holds the embedding spanning two chunks bit for bit as a whole-tensor conversion would', async () => {
    expect(config.vocabSize * config.hiddenSize).toBeGreaterThan(2 ** 20);
    for (const stored of ['F32', 'F16', 'BF16'] as const) {
      for (const dtype of ['f32', 'f16', 'bf16'] as const) {
        const model = await LlamaForCausalLM.fromWeights(config, source(stored), { device: 'cpu', dtype });
        try {
          const w = weightsOf(model);
          expect(Buffer.from(w.lmHead.bytes()).equals(Buffer.from(await whole(stored, dtype))), `${stored} -> ${dtype}`).toBe(true);
          // f16's gather table is f32 (the stored values widened); f32/bf16 gather from the head itself.
          if (dtype === 'f16') expect(Buffer.from(w.embed.bytes()).equals(Buffer.from(await whole(stored, 'f32')))).toBe(true);
          else expect(w.embed).toBe(w.lmHead);
        } finally {
          model.dispose();
        }
      }
    }
    // int8: quantized from the f32 values staged natively; the gather keeps those f32 values.
    const model = await LlamaForCausalLM.fromWeights(config, source('BF16'), { device: 'cpu', dtype: 'int8' });
    try {
      expect(weightsOf(model).lmHead.dtype).toBe('i8');
      expect(Buffer.from(weightsOf(model).embed.bytes()).equals(Buffer.from(await whole('BF16', 'f32')))).toBe(true);
    } finally {
      model.dispose();
    }
  });

  it('refuses a non-finite value in the second chunk, naming its element', async () => {
    const at = 2 ** 20 + 12345;
    for (const stored of ['F32', 'BF16', 'F16'] as const) {
      await expect(LlamaForCausalLM.fromWeights(config, source(stored, { name: EMBED, at }), { device: 'cpu', dtype: 'bf16' })).rejects.toMatchObject({
        code: 'E_WEIGHTS_MISMATCH',
        message: expect.stringContaining(`non-finite value at element ${at}`),
      });
    }
  });
});
