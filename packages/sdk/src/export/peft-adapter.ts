// A PEFT LoRA adapter folder read as plain tensors, for exports that merge it into (or convert it
// beside) a base given as a Hugging Face folder: adapter_config.json (r, lora_alpha, use_rslora)
// and adapter_model.safetensors with keys base_model.model.<HF module path>.lora_A/B.weight.
import { join } from 'node:path';

import { LoraError } from '../io/errors.js';
import { toF32 } from '../io/dtype.js';
import { readJsonFile } from '../io/safe-file.js';
import { SafetensorsFile } from '../io/safetensors-reader.js';
import type { WeightSource } from '../io/tensor.js';

export interface PeftModule {
  /** HF name of the base weight this pair updates, e.g. model.layers.0.self_attn.q_proj.weight. */
  weight: string;
  /** A: [r, in]; B: [out, r], row-major f32. */
  a: Float32Array;
  b: Float32Array;
  inFeatures: number;
  outFeatures: number;
}

export interface PeftAdapter {
  r: number;
  alpha: number;
  rslora: boolean;
  /** alpha / r, or alpha / sqrt(r) with rsLoRA: what B·A is multiplied by. */
  scale: number;
  modules: Map<string, PeftModule>;
}

const KEY_RE = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/;

export async function readPeftAdapter(dir: string): Promise<PeftAdapter> {
  const cfg = (await readJsonFile(join(dir, 'adapter_config.json'))) as Record<string, unknown>;
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA') throw new LoraError('E_CONFIG', `${dir}: peft_type ${String(cfg.peft_type)} is not LORA`);
  const r = cfg.r;
  const alpha = cfg.lora_alpha;
  if (typeof r !== 'number' || r <= 0 || typeof alpha !== 'number') throw new LoraError('E_CONFIG', `${dir}/adapter_config.json: r and lora_alpha must be numbers`);
  if (cfg.use_dora === true) throw new LoraError('E_CONFIG', `${dir}: DoRA adapters cannot be exported`);
  const rslora = cfg.use_rslora === true;
  const file = await SafetensorsFile.open(join(dir, 'adapter_model.safetensors'));
  const pairs = new Map<string, { a?: Float32Array; b?: Float32Array; aShape?: number[]; bShape?: number[] }>();
  try {
    for (const key of file.keys()) {
      const m = KEY_RE.exec(key);
      if (!m) throw new LoraError('E_CONFIG', `${dir}: adapter tensor "${key}" is not a PEFT LoRA key (base_model.model.<module>.lora_A/B.weight)`);
      const t = await file.read(key);
      const p = pairs.get(m[1]) ?? {};
      if (m[2] === 'A') { p.a = toF32(t.dtype, t.data); p.aShape = t.shape; } else { p.b = toF32(t.dtype, t.data); p.bShape = t.shape; }
      pairs.set(m[1], p);
    }
  } finally {
    await file.close();
  }
  const modules = new Map<string, PeftModule>();
  for (const [path, p] of pairs) {
    if (!p.a || !p.b) throw new LoraError('E_CONFIG', `${dir}: ${path} has lora_${p.a ? 'B' : 'A'} missing`);
    if (p.aShape![0] !== r || p.bShape![1] !== r) throw new LoraError('E_SHAPE', `${dir}: ${path} has A [${p.aShape}] and B [${p.bShape}], expected rank ${r}`);
    modules.set(`${path}.weight`, { weight: `${path}.weight`, a: p.a, b: p.b, inFeatures: p.aShape![1], outFeatures: p.bShape![0] });
  }
  return { r, alpha, rslora, scale: rslora ? alpha / Math.sqrt(r) : alpha / r, modules };
}

/** Fails unless every adapted module is a 2-D weight of the base with the adapter's shape (an adapter for another base). */
export function checkAdapterFits(adapter: PeftAdapter, base: WeightSource, name: (hf: string) => string = (n) => n): void {
  for (const m of adapter.modules.values()) {
    const key = name(m.weight);
    if (!base.has(key)) throw new LoraError('E_WEIGHTS_MISMATCH', `the adapter updates ${m.weight}, which the base model does not have: an adapter for another base?`);
    const s = base.info(key).shape;
    if (s.length !== 2 || s[0] !== m.outFeatures || s[1] !== m.inFeatures) {
      throw new LoraError('E_WEIGHTS_MISMATCH', `the adapter's ${m.weight} is [${m.outFeatures}, ${m.inFeatures}] but the base's is [${s.join(', ')}]: an adapter for another base?`);
    }
  }
}

/** W += scale · B·A in place (W: [out, in] row-major f32). */
export function addLoraDelta(w: Float32Array, m: PeftModule, r: number, scale: number): void {
  const K = m.inFeatures;
  for (let n = 0; n < m.outFeatures; n++) {
    const row = n * K;
    for (let j = 0; j < r; j++) {
      const coef = scale * m.b[n * r + j];
      if (coef === 0) continue;
      const a = j * K;
      for (let k = 0; k < K; k++) w[row + k] += coef * m.a[a + k];
    }
  }
}
