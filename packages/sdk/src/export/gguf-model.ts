// A Llama-shaped Hugging Face folder (llama / qwen2 / qwen3), optionally with a PEFT adapter merged
// first, as a GGUF model llama.cpp loads: its architecture and tensor names, hyperparameters, the
// tokenizer in metadata, and weights in f32/f16/bf16/q8_0/q4_0. Tensors are read, merged, permuted
// and encoded one at a time while the file streams to disk.
import { LoraError } from '../io/errors.js';
import { toF32 } from '../io/dtype.js';
import type { WeightSource } from '../io/tensor.js';
import { GGML_BLOCK, type GgmlTypeName, type GgufValue } from './gguf-format.js';
import { encodeTensor, encodeTensorYielding } from './gguf-quant.js';
import { ggufTensorName, llamaPermuteHeads, permuteRows } from './gguf-names.js';
import { kv, writeGguf, type GgufTensorSpec } from './gguf-writer.js';
import { tokenizerMetadata, type TokenizerFiles } from './gguf-tokenizer.js';
import { llama3RopeFactors, type LlamaShapedConfig } from './llama-config.js';
import { addLoraDelta, type PeftAdapter } from './peft-adapter.js';

/** llama.h's llama_ftype for the file's main type (shown by llama.cpp; it reads each tensor's own type). */
const FILE_TYPE: Record<GgmlTypeName, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 };

export function modelMetadata(c: LlamaShapedConfig, dtype: GgmlTypeName, name: string): Map<string, GgufValue> {
  const a = c.arch;
  const m = new Map<string, GgufValue>([
    ['general.architecture', kv.str(a)],
    ['general.type', kv.str('model')],
    ['general.name', kv.str(name)],
    ['general.file_type', kv.u32(FILE_TYPE[dtype])],
    [`${a}.vocab_size`, kv.u32(c.vocabSize)],
    [`${a}.context_length`, kv.u32(c.maxPositions)],
    [`${a}.embedding_length`, kv.u32(c.hiddenSize)],
    [`${a}.block_count`, kv.u32(c.numLayers)],
    [`${a}.feed_forward_length`, kv.u32(c.intermediateSize)],
    [`${a}.attention.head_count`, kv.u32(c.numHeads)],
    [`${a}.attention.head_count_kv`, kv.u32(c.numKvHeads)],
    [`${a}.attention.layer_norm_rms_epsilon`, kv.f32(c.rmsNormEps)],
    [`${a}.rope.freq_base`, kv.f32(c.ropeTheta)],
    [`${a}.rope.dimension_count`, kv.u32(c.headDim)],
  ]);
  if (dtype === 'q8_0' || dtype === 'q4_0') m.set('general.quantization_version', kv.u32(2));
  if (c.explicitHeadDim) {
    m.set(`${a}.attention.key_length`, kv.u32(c.headDim));
    m.set(`${a}.attention.value_length`, kv.u32(c.headDim));
  }
  if (c.ropeScaling?.type === 'linear') {
    m.set(`${a}.rope.scaling.type`, kv.str('linear'));
    m.set(`${a}.rope.scaling.factor`, kv.f32(c.ropeScaling.factor ?? 1));
  }
  return m;
}

/**
 * The type a tensor is stored in: 1-D tensors (norms, biases, rope factors) stay f32 as llama.cpp's
 * converter keeps them; a matrix whose rows do not fill whole 32-value blocks falls back to f16.
 */
export function storedType(dtype: GgmlTypeName, shape: number[]): GgmlTypeName {
  if (shape.length < 2) return 'f32';
  if (shape[shape.length - 1] % GGML_BLOCK[dtype].elements !== 0) return 'f16';
  return dtype;
}

export interface GgufModelSource {
  config: LlamaShapedConfig;
  weights: WeightSource;
  tokenizer: TokenizerFiles;
  adapter?: PeftAdapter;
  name: string;
}

/** The tensors of the GGUF model in llama.cpp's order: embeddings, blocks, final norm, head. */
export function modelTensors(src: GgufModelSource, dtype: GgmlTypeName): GgufTensorSpec[] {
  const { config: c, weights, adapter } = src;
  const specs: GgufTensorSpec[] = [];
  const order = (g: string) => (g.startsWith('token_embd') ? 0 : g.startsWith('blk.') ? 1 : g.startsWith('output_norm') ? 2 : 3);
  const named: [string, string][] = [];
  for (const hf of weights.keys()) {
    if (hf === 'lm_head.weight' && c.tieWordEmbeddings) continue; // llama.cpp reuses token_embd when output is absent
    const g = ggufTensorName(hf);
    if (!g) {
      if (/rotary_emb/.test(hf)) continue;
      throw new LoraError('E_WEIGHTS_MISMATCH', `tensor ${hf} has no llama.cpp name for ${c.arch}`);
    }
    named.push([hf, g]);
  }
  named.sort((x, y) => order(x[1]) - order(y[1]) || layerOf(x[1]) - layerOf(y[1]));
  if (c.ropeScaling?.type === 'llama3') {
    const f = llama3RopeFactors(c);
    specs.push({ name: 'rope_freqs.weight', shape: [f.length], type: 'f32', data: () => encodeTensor('f32', f) });
  }
  for (const [hf, g] of named) {
    const shape = weights.info(hf).shape;
    const type = storedType(dtype, shape);
    specs.push({
      name: g, shape, type,
      data: async () => encodeTensorYielding(type, await hfTensorForGguf(src, hf, shape)),
    });
  }
  const hf = (key: string) => weights.has(key) || weights.has(key.replace(/^model\./, ''));
  if (!hf('model.embed_tokens.weight')) throw new LoraError('E_WEIGHTS_MISMATCH', 'the model has no model.embed_tokens.weight');
  if (!c.tieWordEmbeddings && !weights.has('lm_head.weight')) throw new LoraError('E_WEIGHTS_MISMATCH', 'config.json says the head is untied but there is no lm_head.weight');
  if (adapter) for (const m of adapter.modules.values()) if (!weights.has(m.weight)) throw new LoraError('E_WEIGHTS_MISMATCH', `the adapter updates ${m.weight}, which the base does not have`);
  return specs;
}

const layerOf = (g: string) => (g.startsWith('blk.') ? Number(g.split('.')[1]) : 0);

/** One HF tensor as f32 with the adapter merged and llama's q/k rows permuted. */
async function hfTensorForGguf(src: GgufModelSource, hf: string, shape: number[]): Promise<Float32Array> {
  const t = await src.weights.read(hf);
  let values: Float32Array = Float32Array.from(toF32(t.dtype, t.data));
  const m = src.adapter?.modules.get(hf);
  if (m) addLoraDelta(values, m, src.adapter!.r, src.adapter!.scale);
  const heads = src.config.arch === 'llama' ? llamaPermuteHeads(hf, src.config.numHeads, src.config.numKvHeads) : undefined;
  if (heads) values = permuteRows(values, shape[0], shape.length > 1 ? shape[1] : 1, heads);
  return values;
}

export async function writeGgufModel(out: string, src: GgufModelSource, dtype: GgmlTypeName): Promise<number> {
  const metadata = modelMetadata(src.config, dtype, src.name);
  for (const [k, v] of tokenizerMetadata(src.tokenizer, src.config.vocabSize)) metadata.set(k, v);
  return writeGguf(out, { metadata, tensors: modelTensors(src, dtype) });
}
