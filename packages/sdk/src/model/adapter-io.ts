// PEFT's adapter format: adapter_config.json + adapter_model.safetensors with keys like
// base_model.model.model.decoder.layers.0.self_attn.q_proj.lora_A.weight ([r, in]) and
// ...lora_B.weight ([out, r]), so Python PEFT loads our adapters and we load theirs. Module paths
// come from the family's parameter table (through the adapter's LoraLayout).
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { writeFileAtomic } from '../io/atomic-write.js';
import { LoraError } from '../io/errors.js';
import { toF32 } from '../io/dtype.js';
import { SafetensorsFile } from '../io/safetensors-reader.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import type { RawTensor } from '../io/tensor.js';
import { validateAdapterFolder } from './adapter-validate.js';
import { ALL_LINEAR, LORA_TARGETS, type LoraAdapter, type LoraOptions } from './lora.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/**
 * PEFT's key of a target's A or B in one layer: the module path from the family's parameter table
 * under `base_model.model.` and the causal LM's `model.` (OPT: ...model.decoder.layers.0.self_attn.q_proj).
 */
export function peftKey(lora: LoraAdapter, layer: number, target: string, which: 'A' | 'B'): string {
  return `base_model.model.model.${lora.layout.modulePath(layer, target)}.lora_${which}.weight`;
}

function locate(lora: LoraAdapter, t: string): { module: string; group: number } {
  const at = lora.locate(t);
  if (!at) throw new LoraError('E_CONFIG', `LoRA target ${t} is not one of this model's (${lora.layout.targets.join(', ')})`);
  return at;
}

export interface PeftConfigJson {
  peft_type: 'LORA';
  task_type: 'CAUSAL_LM';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[];
  use_rslora: boolean;
  bias: string;
  fan_in_fan_out: boolean;
  base_model_name_or_path: string | null;
  [k: string]: unknown;
}

export function peftConfig(lora: LoraAdapter, baseModel: string | null): PeftConfigJson {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: lora.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...lora.targets],
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: lora.useRslora,
  };
}

/**
 * The adapter's tensors under PEFT key names (trained groups only), read back from native memory;
 * `of: 'grads'` gives the accumulated gradients under the same names.
 */
export function adapterTensors(lora: LoraAdapter, of: 'weights' | 'grads' = 'weights'): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  lora.layers.forEach((layer, li) => {
    for (const t of lora.targets) {
      const { module, group } = locate(lora, t);
      const m = layer[module];
      if (!m) continue;
      const a = (of === 'grads' ? m.da : m.a).toArray() as Float32Array;
      const b = (of === 'grads' ? m.db : m.b).toArray() as Float32Array;
      const aSize = lora.r * m.inFeatures;
      const bSize = m.outFeatures * lora.r;
      out.set(peftKey(lora, li, t, 'A'), { dtype: 'F32', shape: [lora.r, m.inFeatures], data: a.slice(group * aSize, (group + 1) * aSize) });
      out.set(peftKey(lora, li, t, 'B'), { dtype: 'F32', shape: [m.outFeatures, lora.r], data: b.slice(group * bSize, (group + 1) * bSize) });
    }
  });
  return out;
}

export async function saveAdapter(lora: LoraAdapter, dir: string, baseModel: string | null): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS), adapterTensors(lora), { format: 'pt' });
  await writeFileAtomic(join(dir, ADAPTER_CONFIG), [new TextEncoder().encode(`${JSON.stringify(peftConfig(lora, baseModel), null, 2)}\n`)]);
}

/**
 * Reads adapter_config.json into LoraOptions, refusing what this SDK cannot honour and targets the
 * model does not have (`targets`: the family's; OPT's by default).
 */
export async function readAdapterConfig(dir: string, targets: readonly string[] = LORA_TARGETS): Promise<LoraOptions> {
  await validateAdapterFolder(dir); // shapes, r, alpha and values checked before anything is allocated
  const path = join(dir, ADAPTER_CONFIG);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new LoraError('E_FILE_NOT_FOUND', `${path}: no such file (is ${dir} a PEFT adapter folder?)`);
    throw new LoraError('E_CONFIG', `${path}: not valid JSON: ${err.message}`);
  }
  if (json.peft_type !== 'LORA') throw new LoraError('E_CONFIG', `${path}: peft_type is ${JSON.stringify(json.peft_type)}, only "LORA" is supported`);
  if (json.use_dora === true) throw new LoraError('E_CONFIG', `${path}: DoRA adapters are not supported`);
  if (json.fan_in_fan_out === true) throw new LoraError('E_CONFIG', `${path}: fan_in_fan_out adapters are for Conv1D models (GPT-2), not this library's Linear layers`);
  const bad = (['rank_pattern', 'alpha_pattern'] as const).filter((k) => json[k] && Object.keys(json[k] as object).length > 0);
  if (bad.length) throw new LoraError('E_CONFIG', `${path}: per-module ${bad.join(' and ')} are not supported`);
  const raw = json.target_modules;
  const named = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : [];
  for (const t of named) {
    if (t !== ALL_LINEAR && !(targets as readonly unknown[]).includes(t)) throw new LoraError('E_CONFIG', `${path}: target module ${JSON.stringify(t)} is not one of this model's ${targets.join(', ')}`);
  }
  return {
    r: Number(json.r),
    alpha: Number(json.lora_alpha),
    dropout: Number(json.lora_dropout ?? 0),
    targetModules: named as string[],
    useRslora: json.use_rslora === true,
  };
}

/** Copies an adapter file's tensors into `lora` (created from the same config); checks every key and shape. */
export async function loadAdapterWeights(lora: LoraAdapter, dir: string, config: { numHiddenLayers: number }): Promise<void> {
  const path = join(dir, ADAPTER_WEIGHTS);
  const file = await SafetensorsFile.open(path);
  try {
    const expected = new Set<string>();
    for (let li = 0; li < lora.layers.length; li++) {
      for (const t of lora.targets) {
        const { module, group } = locate(lora, t);
        const m = lora.layers[li][module]!;
        for (const which of ['A', 'B'] as const) {
          const key = peftKey(lora, li, t, which);
          expected.add(key);
          if (!file.has(key)) throw new LoraError('E_WEIGHTS_MISMATCH', `${path}: missing ${key} (is this adapter for a model with ${config.numHiddenLayers} layers?)`);
          const shape = which === 'A' ? [lora.r, m.inFeatures] : [m.outFeatures, lora.r];
          const info = file.info(key);
          if (info.shape.length !== 2 || info.shape[0] !== shape[0] || info.shape[1] !== shape[1]) {
            throw new LoraError('E_WEIGHTS_MISMATCH', `${path}: ${key} has shape [${info.shape.join(', ')}], this model needs [${shape.join(', ')}] (an adapter for another model?)`);
          }
          const raw = await file.read(key);
          const values = toF32(raw.dtype, raw.data);
          const dst = which === 'A' ? m.a : m.b;
          const all = dst.toArray() as Float32Array;
          all.set(values, group * values.length);
          dst.copyFrom(all);
        }
      }
    }
    const unknown = file.keys().filter((k) => !expected.has(k));
    if (unknown.length) {
      throw new LoraError('E_WEIGHTS_MISMATCH', `${path}: tensors this adapter config does not describe: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', …' : ''}`);
    }
  } finally {
    await file.close();
  }
}
