// Saving and loading a quantized base, so a model quantized once (int8 / int4 / nf4) loads again
// without the f32 checkpoint. Format (lora's own; transformers cannot load it):
//   config.json       the model's config plus quantization_config { quant_method: "lora", format, block_size }
//   model.safetensors linear weights as their packed codes under the usual names —
//                       int4/nf4: U8 [N, K/2] (two per byte, first element in the high nibble)
//                       int8:     I8 [N, K]
//                     with "<name>.absmax" F32 scales beside each (one per block of block_size along
//                     the row for int4/nf4 — 64, or the largest power of two dividing a narrower row —
//                     one per row for int8); everything else F32.
// Which tensors are stored quantized is the family's parameter table's answer (its quantizable
// linears). A tied lm_head is not stored: it is re-quantized from embed_tokens at load.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

import { writeFileAtomic } from '../io/atomic-write.js';
import { LoraError } from '../io/errors.js';
import { readJsonFile } from '../io/safe-file.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import type { RawTensor, WeightSource } from '../io/tensor.js';
import type { Param } from '../models/params.js';
import type { BaseDType } from './device.js';

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

export interface QuantizationConfig {
  quant_method: 'lora';
  format: 'int8' | 'int4' | 'nf4';
  block_size: number;
}

/** The quantization_config of a model folder's config.json, or undefined for a plain model. */
export async function readQuantizationConfig(dir: string): Promise<QuantizationConfig | undefined> {
  let json: Record<string, unknown>;
  try {
    json = (await readJsonFile(join(dir, 'config.json'))) as Record<string, unknown>; // never blocks on a FIFO
  } catch {
    return undefined;
  }
  const q = json.quantization_config as Partial<QuantizationConfig> | undefined;
  if (!q) return undefined;
  if (q.quant_method !== 'lora') {
    throw new LoraError('E_CONFIG', `${dir}/config.json: quantization_config.quant_method ${JSON.stringify(q.quant_method)} is not supported (only lora's own "lora" format; load the unquantized checkpoint with dtype 'nf4' instead)`);
  }
  if (!['int8', 'int4', 'nf4'].includes(q.format as string) || q.block_size !== QUANT_BLOCK) {
    throw new LoraError('E_CONFIG', `${dir}/config.json: quantization_config needs format int8|int4|nf4 and block_size ${QUANT_BLOCK}`);
  }
  return q as QuantizationConfig;
}

/** The linear weights that are stored quantized, by canonical name, with their logical [N, K]. */
export function quantizedLinears(params: readonly Param[]): Map<string, [number, number]> {
  return new Map(params.filter((p) => p.quantizable).map((p) => [p.name, [p.shape[0], p.shape[1]]]));
}

/**
 * A view of a quantized file that looks like a plain checkpoint to the shape check: quantized
 * weights report their logical shape and the ".absmax" tensors are hidden.
 */
export function logicalShapes(source: WeightSource, params: readonly Param[]): WeightSource {
  const linears = quantizedLinears(params);
  const logical = (key: string) => linears.get(key.replace(/^model\./, ''));
  return {
    keys: () => source.keys().filter((k) => !k.endsWith('.absmax')),
    has: (k) => source.has(k),
    info: (k) => {
      const l = logical(k);
      return l ? { dtype: 'F32', shape: [...l] } : source.info(k);
    },
    read: (k) => source.read(k),
    close: () => source.close(),
  };
}

export interface QuantizedRaw {
  codes: Uint8Array | Int8Array;
  scales: Float32Array;
}

/** Makes a native weight [N, K] from stacked raw parts (rows in order; blocks never straddle rows). */
export function quantizedTensor(parts: QuantizedRaw[], shape: [number, number], q: QuantizationConfig, device: DeviceName): NativeTensor {
  const codes = q.format === 'int8' ? new Int8Array(parts.reduce((n, p) => n + p.codes.length, 0)) : new Uint8Array(parts.reduce((n, p) => n + p.codes.length, 0));
  const scales = new Float32Array(parts.reduce((n, p) => n + p.scales.length, 0));
  let c = 0;
  let s = 0;
  for (const p of parts) {
    codes.set(p.codes as never, c);
    scales.set(p.scales, s);
    c += p.codes.length;
    s += p.scales.length;
  }
  const dtype = q.format === 'int8' ? 'i8' : q.format;
  return native().Tensor.fromQuantized(codes, scales, shape, dtype, q.format === 'int8' ? 0 : quantBlockFor(shape[1]), device);
}

/** Reads one quantized linear weight's codes and scales, checking dtypes, shapes and scales. */
export async function readQuantizedRaw(source: WeightSource, key: string, shape: [number, number], q: QuantizationConfig): Promise<QuantizedRaw> {
  const [N, K] = shape;
  const codes = await source.read(key);
  const absKey = `${key}.absmax`;
  if (!source.has(absKey)) throw new LoraError('E_WEIGHTS_MISMATCH', `${key}: the quantized checkpoint has no ${absKey}`);
  const scales = await source.read(absKey);
  const packed4 = q.format !== 'int8';
  const wantCodes = packed4 ? [N, K / 2] : [N, K];
  const wantScales = packed4 ? (N * K) / quantBlockFor(K) : N;
  const dtypeOk = packed4 ? codes.dtype === 'U8' : codes.dtype === 'I8';
  if (!dtypeOk || codes.shape.join() !== wantCodes.join()) {
    throw new LoraError('E_WEIGHTS_MISMATCH', `${key}: expected ${packed4 ? 'U8' : 'I8'} codes of shape [${wantCodes.join(', ')}], got ${codes.dtype} [${codes.shape.join(', ')}]`);
  }
  if (scales.dtype !== 'F32' || scales.data.length !== wantScales) {
    throw new LoraError('E_WEIGHTS_MISMATCH', `${absKey}: expected ${wantScales} F32 scales, got ${scales.dtype} × ${scales.data.length}`);
  }
  const s = scales.data as Float32Array;
  for (let i = 0; i < s.length; i++) if (!(Number.isFinite(s[i]) && s[i] >= 0)) throw new LoraError('E_WEIGHTS_MISMATCH', `${absKey}[${i}] = ${s[i]} is not a finite non-negative scale`);
  return { codes: codes.data as Uint8Array | Int8Array, scales: s };
}

/** Writes a model whose base is int8/int4/nf4 so it loads again quantized. */
export async function saveQuantizedBase(
  dir: string,
  configJson: Record<string, unknown>,
  dtype: BaseDType,
  weights: { name: string; tensor: NativeTensor; rows?: [number, number] }[],
  plain: Map<string, RawTensor>,
): Promise<void> {
  if (dtype !== 'int8' && dtype !== 'int4' && dtype !== 'nf4') throw new LoraError('E_CONFIG', `saveQuantized: the base is ${dtype}, not int8/int4/nf4`);
  const out = new Map<string, RawTensor>(plain);
  for (const { name, tensor, rows } of weights) {
    const [N0, N1] = rows ?? [0, tensor.shape[0]];
    const K = tensor.shape[1];
    const n = N1 - N0;
    const bytes = tensor.bytes();
    const scales = tensor.scales()!;
    if (dtype === 'int8') {
      out.set(name, { dtype: 'I8', shape: [n, K], data: new Int8Array(bytes.buffer, bytes.byteOffset + N0 * K, n * K).slice() });
      out.set(`${name}.absmax`, { dtype: 'F32', shape: [n], data: scales.slice(N0, N1) });
    } else {
      const block = tensor.blockSize;
      out.set(name, { dtype: 'U8', shape: [n, K / 2], data: bytes.slice((N0 * K) / 2, (N1 * K) / 2) });
      out.set(`${name}.absmax`, { dtype: 'F32', shape: [(n * K) / block], data: scales.slice((N0 * K) / block, (N1 * K) / block) });
    }
  }
  await mkdir(dir, { recursive: true });
  const keyed = new Map([...out].map(([k, v]) => [`model.${k}`, v]));
  await writeSafetensors(join(dir, 'model.safetensors'), keyed, { format: 'pt', 'lora.quantization': dtype });
  const cfg = { ...configJson, quantization_config: { quant_method: 'lora', format: dtype, block_size: QUANT_BLOCK } };
  await writeFileAtomic(join(dir, 'config.json'), [new TextEncoder().encode(`${JSON.stringify(cfg, null, 2)}\n`)]);
}
