// The frozen base of an OPT model in native memory. q/k/v are stacked into one [3C, C] weight so a
// layer's three projections run as one matmul (and one fused LoRA over G = 3 groups). Linear
// weights take the base dtype (quantized at load for int8/int4/nf4); biases, layer norms and the
// position table stay f32. The token table is the tied lm_head (also gathered from when it is f32
// or bf16; a quantised head keeps an f32 copy for the gather).
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import { assertOptWeights } from '../config/opt-weights.js';
import { LoraError } from '../io/errors.js';
import { toF32 } from '../io/dtype.js';
import type { WeightSource } from '../io/tensor.js';
import type { BaseDType } from './device.js';
import type { Kernels } from './kernels.js';
import { logicalShapes, quantizedTensor, readQuantizedRaw, type QuantizationConfig } from './quantized-io.js';

export interface LayerWeights {
  qkvW: NativeTensor; // [3C, C] base dtype: rows q | k | v
  qkvB: NativeTensor; // [3C] f32
  outW: NativeTensor; // [C, C]
  outB: NativeTensor;
  fc1W: NativeTensor; // [F, C]
  fc1B: NativeTensor;
  fc2W: NativeTensor; // [C, F]
  fc2B: NativeTensor;
  ln1G?: NativeTensor; // self_attn_layer_norm
  ln1B?: NativeTensor;
  ln2G?: NativeTensor; // final_layer_norm (of the layer)
  ln2B?: NativeTensor;
}

export interface ModelWeights {
  embed: NativeTensor; // [V, E] for the input gather: lmHead itself when f32/bf16, else an f32 copy
  lmHead: NativeTensor; // [V, E] base dtype (tied to embed), for the output projection
  pos: NativeTensor; // [P + 2, C] f32
  projIn?: NativeTensor; // [C, E]
  projOut?: NativeTensor; // [E, C]
  finalLnG?: NativeTensor;
  finalLnB?: NativeTensor;
  layers: LayerWeights[];
  dtype: BaseDType;
}

export const QUANT_BLOCK = 64;

/**
 * Block size for a row of `cols` weights: bitsandbytes' 64, or the largest power of two dividing the
 * row when it is narrower or not a multiple (tiny test models), since blocks never straddle rows here.
 */
export function quantBlockFor(cols: number): number {
  let b = QUANT_BLOCK;
  while (b > 2 && cols % b !== 0) b /= 2;
  if (cols % b !== 0) throw new LoraError('E_SHAPE', `cannot quantize rows of ${cols} weights in blocks (the width must be even)`);
  return b;
}

/**
 * Makes a weight tensor of the base dtype from f32 values [rows, cols]. With `pack` (the cpu and
 * ref backends), a bf16 linear is stored pre-packed (bf16p: the same bytes in the cpu GEMM's panel
 * layout, so no product packs the frozen weight again; results are bit-identical) when its rows
 * are whole 64-row panels (so q/k/v and any other row split fall on panel edges) and its width
 * is even.
 */
export function makeWeight(k: Kernels, values: Float32Array, shape: [number, number], dtype: BaseDType, device: DeviceName, pack = false): NativeTensor {
  const { Tensor } = native();
  if (dtype === 'bf16' && pack && shape[0] % 64 === 0 && shape[1] % 2 === 0) {
    using f = Tensor.fromArray(values, shape, 'f32', device);
    return k.quantize(f, 'bf16p', 0);
  }
  if (dtype === 'f32' || dtype === 'bf16' || dtype === 'f16') return Tensor.fromArray(values, shape, dtype, device);
  using f = Tensor.fromArray(values, shape, 'f32', device);
  return k.quantize(f, dtype === 'int8' ? 'i8' : dtype, quantBlockFor(shape[1]));
}

/** Loads and validates every base tensor; the source is read one tensor at a time. */
export async function loadModelWeights(
  config: OptConfig,
  source: WeightSource,
  k: Kernels,
  o: {
    dtype: BaseDType;
    device: DeviceName;
    quant?: QuantizationConfig;
    /** Store bf16 linears pre-packed for the cpu backend (not the tied lm_head: the gather reads it). */
    packBf16?: boolean;
    onTensor?: (name: string, index: number, total: number) => void;
  },
): Promise<ModelWeights> {
  const q = o.quant;
  if (q && o.dtype !== q.format) {
    throw new LoraError('E_CONFIG', `this checkpoint is stored quantized as ${q.format}; load it with dtype '${q.format}' (got '${o.dtype}')`);
  }
  const report = assertOptWeights(config, q ? logicalShapes(source, config) : source);
  const { Tensor } = native();
  const owned: NativeTensor[] = [];
  const total = report.keyOf.size;
  let index = 0;
  const read = async (name: string): Promise<Float32Array> => {
    const key = report.keyOf.get(name);
    if (!key) throw new LoraError('E_WEIGHTS_MISMATCH', `checkpoint has no ${name}`);
    const raw = await source.read(key);
    o.onTensor?.(name, index++, total);
    const f = toF32(raw.dtype, raw.data);
    for (let i = 0; i < f.length; i++) {
      if (!Number.isFinite(f[i])) throw new LoraError('E_WEIGHTS_MISMATCH', `${key} holds a non-finite value at element ${i}`);
    }
    return f;
  };
  const keep = (t: NativeTensor) => (owned.push(t), t);
  const f32 = async (name: string, shape: number[]) => keep(Tensor.fromArray(await read(name), shape, 'f32', o.device));
  const optional = async (name: string, shape: number[]) => (report.keyOf.has(name) ? f32(name, shape) : undefined);
  const zeros = (n: number) => keep(Tensor.fromArray(new Float32Array(n), [n], 'f32', o.device));
  const bias = async (name: string, n: number) => (config.enableBias ? f32(name, [n]) : zeros(n));
  const raw = async (name: string, rows: number, cols: number) => {
    o.onTensor?.(name, index++, total);
    return readQuantizedRaw(source, report.keyOf.get(name)!, [rows, cols], q!);
  };
  // A linear weight of the base dtype: quantized at load, or read as stored codes from a quantized checkpoint.
  const weight = async (name: string, rows: number, cols: number) =>
    keep(q ? quantizedTensor([await raw(name, rows, cols)], [rows, cols], q, o.device) : makeWeight(k, await read(name), [rows, cols], o.dtype, o.device, o.packBf16));

  try {
    const C = config.hiddenSize;
    const F = config.ffnDim;
    const E = config.wordEmbedProjDim;
    const V = config.vocabSize;
    const embedValues = await read('decoder.embed_tokens.weight');
    const lmHead = keep(makeWeight(k, embedValues, [V, E], o.dtype, o.device));
    // The input gather reads the tied lm_head itself when it is f32 or bf16 (one copy of the
    // table); a quantised head keeps an f32 table for the gather.
    const embed = lmHead.dtype === 'f32' || lmHead.dtype === 'bf16' ? lmHead : keep(Tensor.fromArray(embedValues, [V, E], 'f32', o.device));
    const pos = await f32('decoder.embed_positions.weight', [config.maxPositionEmbeddings + 2, C]);
    const projIn = E !== C ? await weight('decoder.project_in.weight', C, E) : undefined;
    const projOut = E !== C ? await weight('decoder.project_out.weight', E, C) : undefined;
    const finalLnG = await optional('decoder.final_layer_norm.weight', [C]);
    const finalLnB = await optional('decoder.final_layer_norm.bias', [C]);
    const layers: LayerWeights[] = [];
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const p = `decoder.layers.${i}`;
      const projs = ['q_proj', 'k_proj', 'v_proj'];
      const qkvBias = new Float32Array(3 * C);
      let qkvW: NativeTensor;
      if (q) {
        const parts = [];
        for (const proj of projs) parts.push(await raw(`${p}.self_attn.${proj}.weight`, C, C));
        qkvW = keep(quantizedTensor(parts, [3 * C, C], q, o.device));
      } else {
        const qkv = new Float32Array(3 * C * C);
        for (const [g, proj] of projs.entries()) qkv.set(await read(`${p}.self_attn.${proj}.weight`), g * C * C);
        qkvW = keep(makeWeight(k, qkv, [3 * C, C], o.dtype, o.device, o.packBf16));
      }
      if (config.enableBias) for (const [g, proj] of projs.entries()) qkvBias.set(await read(`${p}.self_attn.${proj}.bias`), g * C);
      layers.push({
        qkvW,
        qkvB: keep(Tensor.fromArray(qkvBias, [3 * C], 'f32', o.device)),
        outW: await weight(`${p}.self_attn.out_proj.weight`, C, C),
        outB: await bias(`${p}.self_attn.out_proj.bias`, C),
        fc1W: await weight(`${p}.fc1.weight`, F, C),
        fc1B: await bias(`${p}.fc1.bias`, F),
        fc2W: await weight(`${p}.fc2.weight`, C, F),
        fc2B: await bias(`${p}.fc2.bias`, C),
        ln1G: await optional(`${p}.self_attn_layer_norm.weight`, [C]),
        ln1B: await optional(`${p}.self_attn_layer_norm.bias`, [C]),
        ln2G: await optional(`${p}.final_layer_norm.weight`, [C]),
        ln2B: await optional(`${p}.final_layer_norm.bias`, [C]),
      });
    }
    return { embed, lmHead, pos, projIn, projOut, finalLnG, finalLnB, layers, dtype: o.dtype };
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}

/** Every tensor of the base, once each (embed may be lmHead itself), for dispose() and memory accounting. */
export function weightTensors(w: ModelWeights): NativeTensor[] {
  const out = [w.embed, w.lmHead, w.pos, w.projIn, w.projOut, w.finalLnG, w.finalLnB];
  for (const l of w.layers) out.push(...Object.values(l));
  return [...new Set(out.filter((t): t is NativeTensor => t !== undefined))];
}
