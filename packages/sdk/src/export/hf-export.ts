// `--format hf`: a merged Hugging Face folder (safetensors, sharded above a size, config.json,
// generation_config.json, tokenizer files) that our loader and transformers read without LoRA code.
// Any family: the merge is plain tensor arithmetic on the checkpoint's own names (W += scale·B·A),
// so OPT and Llama-shaped folders go through the same path. A quantized base (--base-dtype) is loaded
// by the SDK's model layer as QLoRA trained on it, dequantized and merged through model/merge.ts, and
// the logits error that costs is measured against the f32 base + adapter.
import { copyFile, rename, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { LoraError } from '../io/errors.js';
import { f32ToBf16, f32ToF16, toF32 } from '../io/dtype.js';
import { openWeights } from '../io/open-weights.js';
import type { RawTensor } from '../io/tensor.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import { SAFETENSORS_INDEX } from '../io/sharded.js';
import { AutoModelForCausalLM } from '../models/auto.js';
import type { CausalLM } from '../models/causal-lm.js';
import { mergedTensors } from '../model/merge.js';
import { addLoraDelta, checkAdapterFits, readPeftAdapter } from './peft-adapter.js';

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'added_tokens.json'];
const DEFAULT_SHARD_BYTES = 2 * 1024 ** 3;
const TORCH_DTYPE = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' } as const;

export interface HfExportOptions {
  modelDir: string;
  config: Record<string, unknown>;
  adapterDir?: string;
  dtype: 'f32' | 'f16' | 'bf16';
  out: string;
  baseDtype?: 'int8' | 'int4' | 'nf4';
  maxShardBytes?: number;
}

export interface HfExportReport {
  files: { name: string; bytes: number }[];
  quantization?: { baseDtype: string; maxAbsLogitError: number; relRmsLogitError: number; probeTokens: number };
}

function encode(dtype: 'f32' | 'f16' | 'bf16', shape: number[], v: Float32Array): RawTensor {
  if (dtype === 'f32') return { dtype: 'F32', shape, data: v };
  return dtype === 'f16' ? { dtype: 'F16', shape, data: f32ToF16(v) } : { dtype: 'BF16', shape, data: f32ToBf16(v) };
}

/** The merged tensors, one at a time, under the checkpoint's own names. */
async function* plainMerge(o: HfExportOptions): AsyncGenerator<[string, RawTensor]> {
  const weights = await openWeights(o.modelDir);
  try {
    const adapter = o.adapterDir ? await readPeftAdapter(o.adapterDir) : undefined;
    // OPT checkpoints come with or without the "model." prefix; PEFT keys always carry it.
    const baseName = (hf: string) => (weights.has(hf) ? hf : hf.replace(/^model\./, ''));
    if (adapter) checkAdapterFits(adapter, weights, baseName);
    const byBase = new Map([...(adapter?.modules.values() ?? [])].map((m) => [baseName(m.weight), m]));
    for (const name of weights.keys()) {
      const t = await weights.read(name);
      const m = byBase.get(name);
      if (!m && (t.dtype === o.dtype.toUpperCase() || (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16'))) { yield [name, t]; continue; }
      const v = Float32Array.from(toF32(t.dtype, t.data));
      if (m) addLoraDelta(v, m, adapter!.r, adapter!.scale);
      yield [name, encode(o.dtype, t.shape, v)];
    }
  } finally {
    await weights.close();
  }
}

/** Through the SDK's quantized loading: the base as QLoRA saw it, dequantized, merged by model/merge.ts. */
async function* quantizedMerge(o: HfExportOptions, model: CausalLM): AsyncGenerator<[string, RawTensor]> {
  // The parameter table names tensors under the base model (no "model." prefix); the head is top-level.
  for (const [name, t] of mergedTensors(model)) yield [name.startsWith('lm_head') ? name : `model.${name}`, encode(o.dtype, t.shape, t.data as Float32Array)];
}

/** Writes shards of at most maxShardBytes (one tensor may exceed it alone), plus the index when there is more than one. */
async function writeShards(out: string, tensors: AsyncIterable<[string, RawTensor]>, maxBytes: number): Promise<{ name: string; bytes: number }[]> {
  const files: { name: string; bytes: number }[] = [];
  let cur = new Map<string, RawTensor>();
  let curBytes = 0;
  const pending: { name: string; tensors: Map<string, RawTensor>; bytes: number }[] = [];
  const flush = async () => {
    if (cur.size === 0) return;
    const tmpName = `shard-${pending.length}`;
    // Shards are written as they fill so that only one shard is ever held in memory; final names
    // need the total count, so they are renamed when the last one is written.
    await writeSafetensors(join(out, tmpName), cur, { format: 'pt' });
    pending.push({ name: tmpName, tensors: cur, bytes: curBytes });
    cur = new Map();
    curBytes = 0;
  };
  for await (const [name, t] of tensors) {
    const bytes = t.data.byteLength;
    if (curBytes > 0 && curBytes + bytes > maxBytes) await flush();
    cur.set(name, t);
    curBytes += bytes;
  }
  await flush();
  if (pending.length === 1) {
    await rename(join(out, pending[0].name), join(out, 'model.safetensors'));
    files.push({ name: 'model.safetensors', bytes: pending[0].bytes });
    return files;
  }
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let i = 0; i < pending.length; i++) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(pending.length).padStart(5, '0')}.safetensors`;
    await rename(join(out, pending[i].name), join(out, file));
    for (const name of pending[i].tensors.keys()) weightMap[name] = file;
    files.push({ name: file, bytes: pending[i].bytes });
    total += pending[i].bytes;
  }
  const index = JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2);
  await writeFile(join(out, SAFETENSORS_INDEX), index);
  files.push({ name: SAFETENSORS_INDEX, bytes: Buffer.byteLength(index) });
  return files;
}

export async function exportHfFolder(o: HfExportOptions): Promise<HfExportReport> {
  let quantModel: CausalLM | undefined;
  if (o.baseDtype) {
    if (!o.adapterDir) throw new LoraError('E_CONFIG', '--base-dtype needs --adapter (it says what merging into the quantized base costs)');
    quantModel = await AutoModelForCausalLM.fromPretrained(o.modelDir, { dtype: o.baseDtype, device: 'cpu' });
    await quantModel.loadAdapter(o.adapterDir);
  }
  const files: HfExportReport['files'] = [];
  try {
    files.push(...(await writeShards(o.out, quantModel ? quantizedMerge(o, quantModel) : plainMerge(o), o.maxShardBytes ?? DEFAULT_SHARD_BYTES)));
  } finally {
    quantModel?.dispose();
  }
  const config: Record<string, unknown> = { ...o.config, torch_dtype: TORCH_DTYPE[o.dtype] };
  delete config.quantization_config;
  const put = async (name: string, text: string) => { await writeFile(join(o.out, name), text); files.push({ name, bytes: Buffer.byteLength(text) }); };
  await put('config.json', `${JSON.stringify(config, null, 2)}\n`);
  if (existsSync(join(o.modelDir, 'generation_config.json'))) {
    await copyFile(join(o.modelDir, 'generation_config.json'), join(o.out, 'generation_config.json'));
    files.push({ name: 'generation_config.json', bytes: (await stat(join(o.out, 'generation_config.json'))).size });
  } else {
    const gen: Record<string, unknown> = {};
    for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id']) if (o.config[k] !== undefined) gen[k] = o.config[k];
    await put('generation_config.json', `${JSON.stringify(gen, null, 2)}\n`);
  }
  for (const f of TOKENIZER_FILES) {
    if (existsSync(join(o.modelDir, f))) { await copyFile(join(o.modelDir, f), join(o.out, f)); files.push({ name: f, bytes: (await stat(join(o.out, f))).size }); }
  }
  const report: HfExportReport = { files };
  if (o.baseDtype) report.quantization = await measureQuantizedMerge(o);
  return report;
}

/** Logits of the export (merged into the dequantized base) against the f32 base + adapter, on a fixed probe batch. */
async function measureQuantizedMerge(o: HfExportOptions): Promise<NonNullable<HfExportReport['quantization']>> {
  const merged = await AutoModelForCausalLM.fromPretrained(o.out, { dtype: 'f32', device: 'cpu' });
  const ref = await AutoModelForCausalLM.fromPretrained(o.modelDir, { dtype: 'f32', device: 'cpu' });
  try {
    await ref.loadAdapter(o.adapterDir!);
    const V = ref.config.vocabSize;
    const B = 2;
    const T = 16;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (2 + ((i * 7919) % (V - 2))) | 0);
    const labels = new Int32Array(B * T).fill(-100);
    const run = (m: CausalLM) => {
      const logits = new Float32Array(B * T * V);
      m.step({ batch: B, seq: T, inputIds: ids, labels }, { training: false, logits });
      return logits;
    };
    const a = run(merged);
    const b = run(ref);
    let maxAbs = 0;
    let se = 0;
    let ss = 0;
    for (let i = 0; i < a.length; i++) {
      const d = a[i] - b[i];
      maxAbs = Math.max(maxAbs, Math.abs(d));
      se += d * d;
      ss += b[i] * b[i];
    }
    return { baseDtype: o.baseDtype!, maxAbsLogitError: maxAbs, relRmsLogitError: Math.sqrt(se / ss), probeTokens: B * T };
  } finally {
    merged.dispose();
    ref.dispose();
  }
}
