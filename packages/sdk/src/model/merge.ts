// Merging an adapter into the base: W' = W + scale · B·A for every targeted linear, exported as a
// plain model folder (config.json + model.safetensors with transformers' key names) that needs no
// LoRA code to load. Quantized bases are dequantized first, so the export is f32.
import { copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import type { NativeTensor } from '@lora/core-native';

import { LoraError } from '../io/errors.js';
import type { RawTensor } from '../io/tensor.js';
import { slotOf, type Param } from '../models/params.js';
import type { Kernels } from './kernels.js';
import type { LoraAdapter, LoraModule } from './lora.js';

function f32Of(k: Kernels, t: NativeTensor): Float32Array {
  if (t.dtype === 'f32' || t.dtype === 'bf16' || t.dtype === 'f16') return t.toArray() as Float32Array;
  using d = k.dequantize(t);
  return d.toArray() as Float32Array;
}

/** Adds scale · B_g·A_g to rows [g*N, (g+1)*N) of w ([G*N, K] row-major). */
function addDelta(w: Float32Array, lora: LoraAdapter, m: LoraModule): void {
  const a = m.a.toArray() as Float32Array;
  const b = m.b.toArray() as Float32Array;
  const r = lora.r;
  const K = m.inFeatures;
  const N = m.outFeatures;
  for (let g = 0; g < m.groups; g++) {
    if (!m.trained[g]) continue;
    for (let n = 0; n < N; n++) {
      const row = (g * N + n) * K;
      for (let j = 0; j < r; j++) {
        const coef = lora.scale * b[(g * N + n) * r + j];
        if (coef === 0) continue;
        const aRow = (g * r + j) * K;
        for (let kk = 0; kk < K; kk++) w[row + kk] += coef * a[aRow + kk];
      }
    }
  }
}

/** What merging reads of a model: its parameters, where they live, the adapter and a kernel to dequantize. */
export interface MergeSource {
  readonly params: readonly Param[];
  readonly weights: { readonly layers: readonly object[] };
  readonly lora: LoraAdapter | undefined;
  readonly kernels: Kernels;
}

/**
 * Every tensor of the base's parameter table, as f32 under its checkpoint name, with the adapter
 * merged into the linears it trains when one is present. A stacked weight (q | k | v) is read and
 * merged once and sliced by rows.
 */
export function mergedTensors(model: MergeSource): Map<string, RawTensor> {
  const lora = model.lora;
  const out = new Map<string, RawTensor>();
  const merged = new Map<NativeTensor, Float32Array>();
  for (const p of model.params) {
    const { tensor, rows } = slotOf(model.weights, p);
    if (!tensor) continue;
    let data = merged.get(tensor);
    if (!data) {
      data = f32Of(model.kernels, tensor);
      const m = p.lora && p.layer !== undefined ? lora?.layers[p.layer][p.lora.module] : undefined;
      if (lora && m) addDelta(data, lora, m);
      merged.set(tensor, data);
    }
    const width = p.shape.slice(1).reduce((a, b) => a * b, 1);
    const part = rows ? data.slice(rows[0] * width, rows[1] * width) : data;
    out.set(p.name, { dtype: 'F32', shape: p.shape, data: part });
  }
  return out;
}

const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'];

/** Writes the merged model folder; copies tokenizer files from `tokenizerDir` when given. */
export async function exportMerged(model: MergeSource & { writeModel(dir: string, tensors: Map<string, RawTensor>): Promise<void> }, dir: string, tokenizerDir?: string): Promise<void> {
  if (!model.lora) throw new LoraError('E_CONFIG', 'exportMerged: the model has no adapter to merge');
  await model.writeModel(dir, mergedTensors(model));
  if (tokenizerDir) {
    for (const f of TOKENIZER_FILES) if (existsSync(join(tokenizerDir, f))) await copyFile(join(tokenizerDir, f), join(dir, f));
  }
}
