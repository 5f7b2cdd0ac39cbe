// A PEFT adapter as a llama.cpp LoRA adapter GGUF (what convert_lora_to_gguf writes and
// llama_adapter_lora_init checks): general.type = adapter, adapter.type = lora, adapter.lora.alpha,
// the base's architecture, and for each adapted weight "<gguf name>.lora_a" ([r, in] row-major,
// ggml ne = [in, r]) and ".lora_b" ([out, r], ne = [r, out]).
import { LoraError } from '../io/errors.js';
import type { GgmlTypeName, GgufValue } from './gguf-format.js';
import { encodeTensor } from './gguf-quant.js';
import { ggufTensorName, llamaPermuteHeads, permuteRows } from './gguf-names.js';
import { kv, writeGguf, type GgufTensorSpec } from './gguf-writer.js';
import type { LlamaShapedConfig } from './llama-config.js';
import type { PeftAdapter } from './peft-adapter.js';

/**
 * llama.cpp scales B·A by alpha / r. An rsLoRA adapter's scale is alpha / sqrt(r), so the alpha
 * written is alpha · sqrt(r): (alpha · sqrt(r)) / r = alpha / sqrt(r).
 */
export const ggufAdapterAlpha = (a: PeftAdapter): number => (a.rslora ? a.alpha * Math.sqrt(a.r) : a.alpha);

export function adapterImage(c: LlamaShapedConfig, adapter: PeftAdapter, dtype: GgmlTypeName, name: string) {
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') {
    throw new LoraError('E_CONFIG', `a GGUF adapter is written in f32, f16 or bf16 (its rank-${adapter.r} rows do not fill ${dtype} blocks); got --dtype ${dtype}`);
  }
  const metadata = new Map<string, GgufValue>([
    ['general.architecture', kv.str(c.arch)],
    ['general.type', kv.str('adapter')],
    ['general.name', kv.str(name)],
    ['adapter.type', kv.str('lora')],
    ['adapter.lora.alpha', kv.f32(ggufAdapterAlpha(adapter))],
  ]);
  const tensors: GgufTensorSpec[] = [];
  const modules = [...adapter.modules.values()].sort((x, y) => layer(x.weight) - layer(y.weight) || (x.weight < y.weight ? -1 : 1));
  for (const m of modules) {
    const g = ggufTensorName(m.weight);
    if (!g || !g.startsWith('blk.')) throw new LoraError('E_WEIGHTS_MISMATCH', `the adapter updates ${m.weight}, which has no llama.cpp LoRA name for ${c.arch}`);
    // Permuting W's rows for llama's rope layout permutes the rows of B·A, i.e. the rows of B.
    const heads = c.arch === 'llama' ? llamaPermuteHeads(m.weight, c.numHeads, c.numKvHeads) : undefined;
    const b = heads ? permuteRows(m.b, m.outFeatures, adapter.r, heads) : m.b;
    tensors.push({ name: `${g}.lora_a`, shape: [adapter.r, m.inFeatures], type: dtype, data: () => encodeTensor(dtype, m.a) });
    tensors.push({ name: `${g}.lora_b`, shape: [m.outFeatures, adapter.r], type: dtype, data: () => encodeTensor(dtype, b) });
  }
  return { metadata, tensors };
}

const layer = (hf: string) => Number(/layers\.(\d+)\./.exec(hf)?.[1] ?? -1);

export function writeGgufAdapter(out: string, c: LlamaShapedConfig, adapter: PeftAdapter, dtype: GgmlTypeName, name: string): Promise<number> {
  return writeGguf(out, adapterImage(c, adapter, dtype, name));
}
