// The frozen base of a model in native memory, loaded from its family's parameter table: linear
// weights take the base dtype (quantized at load for int8/int4/nf4), everything else stays f32;
// tensors sharing a role are stacked (OPT's q/k/v into one [3C, C] weight, so a layer's three
// projections run as one matmul and one fused LoRA over G = 3 groups).
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import type { WeightReport } from '../config/weights-check.js';
import { LoraError } from '../io/errors.js';
import { toF32, type TensorData } from '../io/dtype.js';
import type { RawTensor, WeightSource } from '../io/tensor.js';
import type { Param } from '../models/params.js';
import type { BaseDType } from './device.js';
import type { Kernels } from './kernels.js';
import { quantBlockFor, quantizedTensor, readQuantizedRaw, type QuantizationConfig } from './quantized-io.js';

export { QUANT_BLOCK, quantBlockFor } from './quantized-io.js';

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

/** Values per upload: a converted chunk is at most 4 MB in JS (and in the addon's conversion). */
const CHUNK = 1 << 20;

/** The exponent bits that mark an infinity or NaN in a 16-bit float as a checkpoint stores it. */
const NON_FINITE_16: Partial<Record<string, number>> = { BF16: 0x7f80, F16: 0x7c00 };

/**
 * Writes a checkpoint tensor into rows [row0, row0 + its rows) of each destination (contiguous,
 * f32/f16/bf16, same shape), a chunk of whole rows at a time, so no full-size f32 copy of it is
 * ever made: 16-bit values of a destination's own dtype go in as stored (bit-exact: widening and
 * re-rounding them gives the same bits); otherwise the chunk is widened to f32 in JS and the addon
 * rounds it to the destination's dtype (nearest even, as Tensor.fromArray does for a whole tensor).
 * Every value is checked finite, as before.
 */
function writeRows(dests: readonly NativeTensor[], row0: number, raw: RawTensor, key: string): void {
  const n = raw.data.length;
  const rows = raw.shape.length ? raw.shape[0] : 1;
  const width = rows ? n / rows : 0;
  const perChunk = Math.max(1, Math.floor(CHUNK / Math.max(width, 1)));
  const mask16 = NON_FINITE_16[raw.dtype];
  for (let r = 0; r < rows; r += perChunk) {
    const nr = Math.min(perChunk, rows - r);
    const part = raw.data.subarray(r * width, (r + nr) * width) as TensorData;
    let f32: Float32Array | undefined;
    const widened = () => (f32 ??= toF32(raw.dtype, part));
    if (mask16 !== undefined) {
      const bits = part as Uint16Array;
      for (let i = 0; i < bits.length; i++) if ((bits[i] & mask16) === mask16) nonFinite(key, r * width + i);
    } else {
      const f = widened();
      for (let i = 0; i < f.length; i++) if (!Number.isFinite(f[i])) nonFinite(key, r * width + i);
    }
    for (const t of dests) {
      using rowsOf = t.narrow(0, row0 + r, nr);
      rowsOf.copyFrom(sameBits(t.dtype, raw.dtype) ? (part as Uint16Array) : widened());
    }
  }
}

function sameBits(native: string, stored: string): boolean {
  return (native === 'bf16' && stored === 'BF16') || (native === 'f16' && stored === 'F16');
}

function nonFinite(key: string, i: number): never {
  throw new LoraError('E_WEIGHTS_MISMATCH', `${key} holds a non-finite value at element ${i}`);
}

/**
 * Loads every tensor a parameter table lists (checked against the file in `report`), one tensor at
 * a time: linears in the base dtype (quantized at load, or read as stored codes from a quantized
 * checkpoint), everything else f32; tensors sharing a role in a layer are stacked by rows. A tensor
 * goes from its stored bytes into native memory in chunks (writeRows), so the load's peak is about
 * one tensor as stored plus the native result: a Qwen2.5-0.5B-shaped checkpoint (bf16 base on cpu,
 * 988 MB of bf16 tensors, the 136 M-entry embedding the largest) peaked at 1882 MB RSS when each
 * tensor became a whole f32 array first, 1169 MB now (f32-stored: 1721 -> 1182 MB), and loads in
 * 9.5 s instead of 24.7. int8/int4/nf4 and pre-packed bf16 linears are staged in native f32 first.
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
  const keep = (t: NativeTensor) => (owned.push(t), t);
  // The parts of one tensor into `dests` (each [rows, ...] of the stacked shape), one part in JS at a time.
  const readInto = async (parts: Param[], dests: NativeTensor[]): Promise<void> => {
    let row = 0;
    for (const p of parts) {
      const key = keyOf(p.name);
      const raw = await source.read(key);
      o.onTensor?.(p.name, index++, total);
      writeRows(dests, row, raw, key);
      row += raw.shape.length ? raw.shape[0] : 1;
    }
  };
  /**
   * A weight of the base dtype. With `pack` (the cpu and ref backends), a bf16 linear is stored
   * pre-packed (bf16p: the same bytes in the cpu GEMM's panel layout, so no product packs the frozen
   * weight again; results are bit-identical) when its rows are whole 64-row panels (so q/k/v and any
   * other row split fall on panel edges) and its width is even. `gather`: also an f32 table for the
   * embedding gather when the weight is neither f32 nor bf16.
   */
  const weight = async (parts: Param[], shape: [number, number], pack: boolean, gather: boolean): Promise<{ w: NativeTensor; table?: NativeTensor }> => {
    const packed = o.dtype === 'bf16' && pack && shape[0] % 64 === 0 && shape[1] % 2 === 0;
    if (!packed && (o.dtype === 'f32' || o.dtype === 'bf16' || o.dtype === 'f16')) {
      const w = keep(Tensor.empty(o.dtype, shape, o.device));
      const table = gather && o.dtype === 'f16' ? keep(Tensor.empty('f32', shape, o.device)) : undefined;
      await readInto(parts, table ? [w, table] : [w]);
      return { w, table };
    }
    const f = keep(Tensor.empty('f32', shape, o.device));
    await readInto(parts, [f]);
    const w = keep(packed ? k.quantize(f, 'bf16p', 0) : k.quantize(f, o.dtype === 'int8' ? 'i8' : (o.dtype as 'int4' | 'nf4'), quantBlockFor(shape[1])));
    if (gather) return { w, table: f };
    owned.splice(owned.indexOf(f), 1);
    f.dispose();
    return { w };
  };
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
        const { w, table } = await weight(parts, [shape[0], shape[1]], false, true);
        owner.lmHead = w;
        owner[first.role] = table ?? w;
      } else if (first.role === o.head) {
        owner[first.role] = (await weight(parts, [shape[0], shape[1]], false, false)).w;
      } else if (first.quantizable && q) {
        const raws = [];
        for (const p of parts) {
          o.onTensor?.(p.name, index++, total);
          raws.push(await readQuantizedRaw(source, keyOf(p.name), [p.shape[0], p.shape[1]], q));
        }
        owner[first.role] = keep(quantizedTensor(raws, [shape[0], shape[1]], q, o.device));
      } else if (first.quantizable) {
        owner[first.role] = (await weight(parts, [shape[0], shape[1]], o.packBf16 ?? false, false)).w;
      } else {
        const t = keep(Tensor.empty('f32', shape, o.device));
        await readInto(parts, [t]);
        owner[first.role] = t;
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
