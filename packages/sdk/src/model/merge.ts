// Merging an adapter into the base: W' = W + scale · B·A for every targeted linear, exported as a
// plain OPT folder (config.json + model.safetensors with transformers' key names) that needs no
// LoRA code to load. Quantized bases are dequantized first, so the export is f32.
import { copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import type { NativeTensor } from '@lora/core-native';

import { writeOptModel } from '../config/opt-checkpoint.js';
import { LoraError } from '../io/errors.js';
import type { RawTensor } from '../io/tensor.js';
import type { LoraAdapter, LoraModule } from './lora.js';
import type { OptForCausalLM } from './opt.js';

function f32Of(model: OptForCausalLM, t: NativeTensor): Float32Array {
  if (t.dtype === 'f32' || t.dtype === 'bf16' || t.dtype === 'f16') return t.toArray() as Float32Array;
  using d = model.kernels.dequantize(t);
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

/** The base (with the adapter merged when present) as f32 tensors under OPT's canonical names. */
export function mergedTensors(model: OptForCausalLM): Map<string, RawTensor> {
  const c = model.config;
  const w = model.weights;
  const lora = model.lora;
  const out = new Map<string, RawTensor>();
  const put = (name: string, t: NativeTensor | undefined, data?: Float32Array) => {
    if (!t) return;
    out.set(name, { dtype: 'F32', shape: t.shape, data: data ?? f32Of(model, t) });
  };
  const C = c.hiddenSize;
  put('decoder.embed_tokens.weight', w.embed);
  put('decoder.embed_positions.weight', w.pos);
  put('decoder.project_in.weight', w.projIn);
  put('decoder.project_out.weight', w.projOut);
  put('decoder.final_layer_norm.weight', w.finalLnG);
  put('decoder.final_layer_norm.bias', w.finalLnB);
  w.layers.forEach((l, i) => {
    const p = `decoder.layers.${i}`;
    const ll = lora?.layers[i];
    const qkv = f32Of(model, l.qkvW);
    if (lora && ll?.qkv) addDelta(qkv, lora, ll.qkv);
    const qkvB = l.qkvB.toArray() as Float32Array;
    ['q_proj', 'k_proj', 'v_proj'].forEach((proj, g) => {
      out.set(`${p}.self_attn.${proj}.weight`, { dtype: 'F32', shape: [C, C], data: qkv.slice(g * C * C, (g + 1) * C * C) });
      if (c.enableBias) out.set(`${p}.self_attn.${proj}.bias`, { dtype: 'F32', shape: [C], data: qkvB.slice(g * C, (g + 1) * C) });
    });
    const lin = (name: string, wt: NativeTensor, bias: NativeTensor, m: LoraModule | undefined) => {
      const data = f32Of(model, wt);
      if (lora && m) addDelta(data, lora, m);
      put(`${p}.${name}.weight`, wt, data);
      if (c.enableBias) put(`${p}.${name}.bias`, bias);
    };
    lin('self_attn.out_proj', l.outW, l.outB, ll?.out_proj);
    lin('fc1', l.fc1W, l.fc1B, ll?.fc1);
    lin('fc2', l.fc2W, l.fc2B, ll?.fc2);
    put(`${p}.self_attn_layer_norm.weight`, l.ln1G);
    put(`${p}.self_attn_layer_norm.bias`, l.ln1B);
    put(`${p}.final_layer_norm.weight`, l.ln2G);
    put(`${p}.final_layer_norm.bias`, l.ln2B);
  });
  return out;
}

const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'];

/** Writes the merged model folder; copies tokenizer files from `tokenizerDir` when given. */
export async function exportMerged(model: OptForCausalLM, dir: string, tokenizerDir?: string): Promise<void> {
  if (!model.lora) throw new LoraError('E_CONFIG', 'exportMerged: the model has no adapter to merge');
  await writeOptModel(dir, model.config, mergedTensors(model));
  if (tokenizerDir) {
    for (const f of TOKENIZER_FILES) if (existsSync(join(tokenizerDir, f))) await copyFile(join(tokenizerDir, f), join(dir, f));
  }
}
