// The frozen base of an OPT model in native memory. q/k/v are stacked into one [3C, C] weight so a
// layer's three projections run as one matmul (and one fused LoRA over G = 3 groups). Linear
// weights take the base dtype (quantized at load for int8/int4/nf4); biases, layer norms and the
// position table stay f32. The token table is the tied lm_head (also gathered from when it is f32
// or bf16; a quantised head keeps an f32 copy for the gather).
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import { assertOptWeights } from '../config/opt-weights.js';
import type { WeightReport } from '../config/weights-check.js';
import { LoraError } from '../io/errors.js';
import { toF32 } from '../io/dtype.js';
import type { WeightSource } from '../io/tensor.js';
import { OPT_PARAMS } from '../models/opt-params.js';
import { expandParams, type Param } from '../models/params.js';
import type { BaseDType } from './device.js';
import type { Kernels } from './kernels.js';
import { logicalShapes, quantBlockFor, quantizedTensor, readQuantizedRaw, type QuantizationConfig } from './quantized-io.js';

export { QUANT_BLOCK, quantBlockFor } from './quantized-io.js';

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

/** A family's base tensors by role (see the parameter table), as loaded. */
export interface LoadedWeights {
  globals: Record<string, NativeTensor>;
  layers: Record<string, NativeTensor>[];
}

export interface LoadWeightOptions {
  dtype: BaseDType;
  device: DeviceName;
  quant?: QuantizationConfig;
  /** Store bf16 linears pre-packed for the cpu backend (not a tied head: the gather reads it). */
  packBf16?: boolean;
  /**
   * The role of an embedding tied to the output head: it is kept in the base dtype as `lmHead`
   * (one copy of the table, also gathered from when it is f32 or bf16; a quantised head keeps an
   * f32 copy under the role for the gather).
   */
  tiedEmbedding?: string;
  onTensor?: (name: string, index: number, total: number) => void;
}

/**
 * Loads every tensor a parameter table lists (checked against the file in `report`), one tensor at
 * a time: linears in the base dtype (quantized at load, or read as stored codes from a quantized
 * checkpoint), everything else f32; tensors sharing a role in a layer are stacked by rows.
 */
export async function loadWeights(params: readonly Param[], report: WeightReport, source: WeightSource, k: Kernels, o: LoadWeightOptions): Promise<LoadedWeights> {
  const q = o.quant;
  if (q && o.dtype !== q.format) {
    throw new LoraError('E_CONFIG', `this checkpoint is stored quantized as ${q.format}; load it with dtype '${q.format}' (got '${o.dtype}')`);
  }
  const { Tensor } = native();
  const owned: NativeTensor[] = [];
  const total = report.keyOf.size;
  let index = 0;
  const keyOf = (name: string) => {
    const key = report.keyOf.get(name);
    if (!key) throw new LoraError('E_WEIGHTS_MISMATCH', `checkpoint has no ${name}`);
    return key;
  };
  const read = async (name: string): Promise<Float32Array> => {
    const key = keyOf(name);
    const raw = await source.read(key);
    o.onTensor?.(name, index++, total);
    const f = toF32(raw.dtype, raw.data);
    for (let i = 0; i < f.length; i++) {
      if (!Number.isFinite(f[i])) throw new LoraError('E_WEIGHTS_MISMATCH', `${key} holds a non-finite value at element ${i}`);
    }
    return f;
  };
  const readAll = async (parts: Param[]): Promise<Float32Array> => {
    if (parts.length === 1) return read(parts[0].name);
    const out = new Float32Array(parts.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0));
    let at = 0;
    for (const p of parts) {
      const v = await read(p.name);
      out.set(v, at);
      at += v.length;
    }
    return out;
  };
  const keep = (t: NativeTensor) => (owned.push(t), t);
  // Parts of one tensor: params sharing a role (in one layer), in row order.
  const slots = new Map<string, Param[]>();
  for (const p of params) {
    const key = `${p.layer ?? ''}:${p.role}`;
    const parts = slots.get(key) ?? [];
    if (!parts.length) slots.set(key, parts);
    parts.push(p);
  }
  const out: LoadedWeights = { globals: {}, layers: [] };
  try {
    for (const parts of slots.values()) {
      parts.sort((a, b) => (a.stack?.index ?? 0) - (b.stack?.index ?? 0));
      const first = parts[0];
      const rows = parts.reduce((n, p) => n + p.shape[0], 0);
      const shape = [rows, ...first.shape.slice(1)];
      const owner = first.layer === undefined ? out.globals : (out.layers[first.layer] ??= {});
      if (first.role === o.tiedEmbedding) {
        const values = await readAll(parts);
        const head = keep(makeWeight(k, values, [shape[0], shape[1]], o.dtype, o.device));
        owner.lmHead = head;
        owner[first.role] = head.dtype === 'f32' || head.dtype === 'bf16' ? head : keep(Tensor.fromArray(values, shape, 'f32', o.device));
      } else if (first.quantizable && q) {
        const raws = [];
        for (const p of parts) {
          o.onTensor?.(p.name, index++, total);
          raws.push(await readQuantizedRaw(source, keyOf(p.name), [p.shape[0], p.shape[1]], q));
        }
        owner[first.role] = keep(quantizedTensor(raws, [shape[0], shape[1]], q, o.device));
      } else if (first.quantizable) {
        owner[first.role] = keep(makeWeight(k, await readAll(parts), [shape[0], shape[1]], o.dtype, o.device, o.packBf16));
      } else {
        owner[first.role] = keep(Tensor.fromArray(await readAll(parts), shape, 'f32', o.device));
      }
    }
    return out;
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}

/** Loads and validates every base tensor of an OPT model; the source is read one tensor at a time. */
export async function loadModelWeights(config: OptConfig, source: WeightSource, k: Kernels, o: Omit<LoadWeightOptions, 'tiedEmbedding'>): Promise<ModelWeights> {
  const params = expandParams(OPT_PARAMS, config);
  const report = assertOptWeights(config, o.quant ? logicalShapes(source, params) : source);
  const loaded = await loadWeights(params, report, source, k, { ...o, tiedEmbedding: 'embed' });
  // Without biases (enable_bias false) the linears add zeros: one f32 vector per missing bias.
  const { Tensor } = native();
  const zeros = (n: number) => Tensor.fromArray(new Float32Array(n), [n], 'f32', o.device);
  const C = config.hiddenSize;
  const layers = loaded.layers.map((l) => ({
    ...l,
    qkvB: l.qkvB ?? zeros(3 * C), outB: l.outB ?? zeros(C), fc1B: l.fc1B ?? zeros(config.ffnDim), fc2B: l.fc2B ?? zeros(C),
  })) as unknown as LayerWeights[];
  return { ...(loaded.globals as unknown as Omit<ModelWeights, 'layers' | 'dtype'>), layers, dtype: o.dtype };
}

/** Every tensor of the base, once each (embed may be lmHead itself), for dispose() and memory accounting. */
export function weightTensors(w: ModelWeights): NativeTensor[] {
  const out = [w.embed, w.lmHead, w.pos, w.projIn, w.projOut, w.finalLnG, w.finalLnB];
  for (const l of w.layers) out.push(...Object.values(l));
  return [...new Set(out.filter((t): t is NativeTensor => t !== undefined))];
}
