// The frozen base of an OPT model in native memory. q/k/v are stacked into one [3C, C] weight so a
// layer's three projections run as one matmul (and one fused LoRA over G = 3 groups). Linear
// weights take the base dtype (quantized at load for int8/int4/nf4); biases, layer norms and the
// embedding tables stay f32 (they are small, and the embedding gather reads f32).
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import { assertOptWeights } from '../config/opt-weights.js';
import { LoraError } from '../io/errors.js';
import { toF32 } from '../io/dtype.js';
import type { WeightSource } from '../io/tensor.js';
import type { BaseDType } from './device.js';
import type { Kernels } from './kernels.js';

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
  embed: NativeTensor; // [V, E] f32, for the input gather
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

/** Makes a weight tensor of the base dtype from f32 values [rows, cols]. */
export function makeWeight(k: Kernels, values: Float32Array, shape: [number, number], dtype: BaseDType, device: DeviceName): NativeTensor {
  const { Tensor } = native();
  if (dtype === 'f32' || dtype === 'bf16' || dtype === 'f16') return Tensor.fromArray(values, shape, dtype, device);
  using f = Tensor.fromArray(values, shape, 'f32', device);
  return k.quantize(f, dtype === 'int8' ? 'i8' : dtype, QUANT_BLOCK);
}

/** Loads and validates every base tensor; the source is read one tensor at a time. */
export async function loadModelWeights(
  config: OptConfig,
  source: WeightSource,
  k: Kernels,
  o: { dtype: BaseDType; device: DeviceName; onTensor?: (name: string, index: number, total: number) => void },
): Promise<ModelWeights> {
  const report = assertOptWeights(config, source);
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
  const weight = async (name: string, rows: number, cols: number) => keep(makeWeight(k, await read(name), [rows, cols], o.dtype, o.device));

  try {
    const C = config.hiddenSize;
    const F = config.ffnDim;
    const E = config.wordEmbedProjDim;
    const V = config.vocabSize;
    const embedValues = await read('decoder.embed_tokens.weight');
    const embed = keep(Tensor.fromArray(embedValues, [V, E], 'f32', o.device));
    const lmHead = keep(makeWeight(k, embedValues, [V, E], o.dtype, o.device));
    const pos = await f32('decoder.embed_positions.weight', [config.maxPositionEmbeddings + 2, C]);
    const projIn = E !== C ? keep(makeWeight(k, await read('decoder.project_in.weight'), [C, E], o.dtype, o.device)) : undefined;
    const projOut = E !== C ? keep(makeWeight(k, await read('decoder.project_out.weight'), [E, C], o.dtype, o.device)) : undefined;
    const finalLnG = await optional('decoder.final_layer_norm.weight', [C]);
    const finalLnB = await optional('decoder.final_layer_norm.bias', [C]);
    const layers: LayerWeights[] = [];
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const p = `decoder.layers.${i}`;
      const qkv = new Float32Array(3 * C * C);
      const qkvBias = new Float32Array(3 * C);
      for (const [g, proj] of ['q_proj', 'k_proj', 'v_proj'].entries()) {
        qkv.set(await read(`${p}.self_attn.${proj}.weight`), g * C * C);
        if (config.enableBias) qkvBias.set(await read(`${p}.self_attn.${proj}.bias`), g * C);
      }
      layers.push({
        qkvW: keep(makeWeight(k, qkv, [3 * C, C], o.dtype, o.device)),
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

/** Every tensor of the base, for dispose() and memory accounting. */
export function weightTensors(w: ModelWeights): NativeTensor[] {
  const out = [w.embed, w.lmHead, w.pos, w.projIn, w.projOut, w.finalLnG, w.finalLnB];
  for (const l of w.layers) out.push(...Object.values(l));
  return out.filter((t): t is NativeTensor => t !== undefined);
}
