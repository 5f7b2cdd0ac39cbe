// `lora export` in the SDK: a model folder (plus an optional PEFT adapter) to a merged Hugging Face
// folder or to GGUF files (+ Ollama Modelfile). Everything is written into a staging folder beside
// the destination and renamed into place at the end, so a failure (a full disk included) leaves no
// half-written export under the final name.
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';

import { LoraError } from '../io/errors.js';
import { readJsonFile } from '../io/safe-file.js';
import { openWeights } from '../io/open-weights.js';
import { resolveModelDir } from '../hub/resolve.js';
import { isGgmlTypeName, type GgmlTypeName } from './gguf-format.js';
import { writeGgufModel } from './gguf-model.js';
import { writeGgufAdapter } from './gguf-adapter.js';
import { readTokenizerFiles, chatTemplate } from './gguf-tokenizer.js';
import { parseLlamaShapedConfig } from './llama-config.js';
import { modelfile } from './modelfile.js';
import { checkAdapterFits, readPeftAdapter } from './peft-adapter.js';
import { exportHfFolder, type HfExportReport } from './hf-export.js';

export type ExportFormat = 'hf' | 'gguf';

export interface ExportOptions {
  /** A model folder or hub id. */
  model: string;
  /** A PEFT adapter folder, merged into the base (or, with adapterOnly, converted beside it). */
  adapter?: string;
  format: ExportFormat;
  /** gguf: f32 | f16 | bf16 | q8_0 | q4_0 (default f16); hf: f32 | f16 | bf16 (default f32). */
  dtype?: GgmlTypeName;
  /** gguf only: write the unmerged base and the adapter as separate GGUF files. */
  adapterOnly?: boolean;
  /** hf only: load the base quantized (int8 | int4 | nf4), as QLoRA trained it, and report the cost of merging into it. */
  baseDtype?: 'int8' | 'int4' | 'nf4';
  /** Destination folder; refused when it exists unless `force`. */
  out: string;
  force?: boolean;
  /** hf only: shard safetensors above this many bytes (default 2 GiB, transformers' 2GB-ish shards). */
  maxShardBytes?: number;
}

export interface ExportResult {
  out: string;
  files: { name: string; bytes: number }[];
  /** hf export from a quantized base: the logits error the dequantized merge costs. */
  quantization?: HfExportReport['quantization'];
}

const exists = (p: string) => stat(p).then(() => true, () => false);

export async function exportModel(o: ExportOptions): Promise<ExportResult> {
  if (o.format !== 'hf' && o.format !== 'gguf') throw new LoraError('E_CONFIG', `unknown export format "${String(o.format)}" (hf or gguf)`);
  const dtype = o.dtype ?? (o.format === 'gguf' ? 'f16' : 'f32');
  if (!isGgmlTypeName(dtype)) throw new LoraError('E_DTYPE', `unknown export dtype "${String(dtype)}" (f32, f16, bf16, q8_0, q4_0)`);
  if (o.format === 'hf' && !['f32', 'f16', 'bf16'].includes(dtype)) throw new LoraError('E_DTYPE', `--format hf writes f32, f16 or bf16 safetensors; ${dtype} is a GGUF type (use --format gguf)`);
  if (o.adapterOnly && (o.format !== 'gguf' || !o.adapter)) throw new LoraError('E_CONFIG', '--adapter-only needs --format gguf and --adapter');
  if (o.baseDtype && o.format !== 'hf') throw new LoraError('E_CONFIG', 'a quantized base (--base-dtype) is only merged for --format hf');
  const out = resolve(o.out);
  if ((await exists(out)) && !o.force) throw new LoraError('E_CONFIG', `${out} already exists; pass --force to replace it`);
  const modelDir = await resolveModelDir(o.model);
  const config = (await readJsonFile(join(modelDir, 'config.json'))) as Record<string, unknown>;

  await mkdir(dirname(out), { recursive: true });
  const stage = join(dirname(out), `.${basename(out)}.${process.pid}.${randomBytes(4).toString('hex')}.partial`);
  await mkdir(stage);
  try {
    const result: ExportResult = { out, files: [] };
    if (o.format === 'gguf') await exportGguf(o, modelDir, config, dtype, stage, result);
    else {
      const report = await exportHfFolder({ modelDir, config, adapterDir: o.adapter, dtype: dtype as 'f32' | 'f16' | 'bf16', out: stage, baseDtype: o.baseDtype, maxShardBytes: o.maxShardBytes });
      result.files = report.files;
      result.quantization = report.quantization;
    }
    if (await exists(out)) {
      const old = `${stage}.old`;
      await rename(out, old);
      await rename(stage, out);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(stage, out);
    }
    return result;
  } catch (err) {
    await rm(stage, { recursive: true, force: true });
    throw err;
  }
}

async function exportGguf(o: ExportOptions, modelDir: string, raw: Record<string, unknown>, dtype: GgmlTypeName, stage: string, result: ExportResult): Promise<void> {
  if (raw.model_type === 'opt') {
    throw new LoraError('E_CONFIG', 'OPT cannot be exported to GGUF: llama.cpp has no OPT architecture, so no runtime that reads GGUF could run it. Use --format hf for a merged Hugging Face folder.');
  }
  const config = parseLlamaShapedConfig(raw);
  const tokenizer = await readTokenizerFiles(modelDir);
  const adapter = o.adapter ? await readPeftAdapter(o.adapter) : undefined;
  const weights = await openWeights(modelDir);
  const name = typeof raw._name_or_path === 'string' && raw._name_or_path ? raw._name_or_path : basename(modelDir);
  try {
    if (adapter) checkAdapterFits(adapter, weights);
    const add = async (file: string, write: (p: string) => Promise<number>) => result.files.push({ name: file, bytes: await write(join(stage, file)) });
    const model = 'model.gguf';
    if (o.adapterOnly) {
      await add(model, (p) => writeGgufModel(p, { config, weights, tokenizer, name }, dtype));
      await add('adapter.gguf', (p) => writeGgufAdapter(p, config, adapter!, dtype === 'bf16' || dtype === 'f32' ? dtype : 'f16', `${name} LoRA`));
    } else {
      await add(model, (p) => writeGgufModel(p, { config, weights, tokenizer, adapter, name }, dtype));
    }
    // Stop on the eos and on the turn-ending tokens of the chat layouts, where the vocab has them.
    const added = new Set((tokenizer.tokenizer.added_tokens ?? []).map((t) => t.content));
    const eos = tokenizer.config.eos_token;
    const stops = [typeof eos === 'string' ? eos : (eos as { content?: string } | undefined)?.content, '<|im_end|>', '<|eot_id|>', '<|endoftext|>', '<|end_of_text|>']
      .filter((s): s is string => !!s && added.has(s));
    const text = modelfile({ from: `./${model}`, adapter: o.adapterOnly ? './adapter.gguf' : undefined, chatTemplate: chatTemplate(tokenizer.config), stops });
    await writeFile(join(stage, 'Modelfile'), text);
    result.files.push({ name: 'Modelfile', bytes: Buffer.byteLength(text) });
  } finally {
    await weights.close();
  }
}

