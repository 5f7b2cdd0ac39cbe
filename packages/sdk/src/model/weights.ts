// The frozen base of a model in native memory, loaded from its family's parameter table: linear
// weights take the base dtype (quantized at load for int8/int4/nf4), everything else stays f32;
// tensors sharing a role are stacked (OPT's q/k/v into one [3C, C] weight, so a layer's three
// projections run as one matmul and one fused LoRA over G = 3 groups).
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { WeightReport } from '../config/weights-check.js';
import { LoraError } from '../io/errors.js';
import { toF32 } from '../io/dtype.js';
import type { WeightSource } from '../io/tensor.js';
import type { Param } from '../models/params.js';
import type { BaseDType } from './device.js';
import type { Kernels } from './kernels.js';
import { quantBlockFor, quantizedTensor, readQuantizedRaw, type QuantizationConfig } from './quantized-io.js';

export { QUANT_BLOCK, quantBlockFor } from './quantized-io.js';

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
  /** The role of an untied output head: kept in the base dtype (not pre-packed; the loss op reads it). */
  head?: string;
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
      } else if (first.role === o.head) {
        owner[first.role] = keep(makeWeight(k, await readAll(parts), [shape[0], shape[1]], o.dtype, o.device));
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

/** Every tensor of the base, once each (embed may be lmHead itself), for dispose() and memory accounting. */
export function weightTensors(w: { layers: readonly object[] }): NativeTensor[] {
  const isTensor = (t: unknown): t is NativeTensor => typeof t === 'object' && t !== null && 'dispose' in t;
  const out = Object.values(w as Record<string, unknown>).filter(isTensor);
  for (const l of w.layers) out.push(...Object.values(l as Record<string, unknown>).filter(isTensor));
  return [...new Set(out)];
}
