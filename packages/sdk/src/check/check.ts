// `lora check`: run a model + adapter on the batch stored in an expect file and compare logits,
// loss and every LoRA gradient with the stored answer (e.g. PyTorch's), like llm.c's test against
// PyTorch. Dropout is off; the loss is HF's causal-LM loss.
import { IGNORE_INDEX } from '../data/batches.js';
import { LoraError } from '../io/errors.js';
import { toF32 } from '../io/dtype.js';
import { SafetensorsFile } from '../io/safetensors-reader.js';
import { adapterTensors } from '../model/adapter-io.js';
import type { BaseDType, DeviceOption } from '../model/device.js';
import { AutoModelForCausalLM } from '../models/auto.js';

export interface CheckOptions {
  model: string;
  adapter?: string;
  expect: string;
  device?: DeviceOption;
  dtype?: BaseDType;
  /**
   * Relative tolerance (max |a − b| / max |b|); default 1e-4 for f32, 1e-1 for bf16/f16, 3e-1 for
   * quantized — for bf16, the expect file's own bound per kind of tensor where it states one
   * (bf16_tolerance_{logits,loss,grads} in its metadata, from PyTorch autocast's measured error).
   */
  tolerance?: number;
}

export interface TensorComparison {
  name: string;
  maxAbs: number;
  /** max |ours − expected| / max |expected|. */
  rel: number;
  tol: number;
  ok: boolean;
}

export interface CheckReport {
  device: string;
  dtype: BaseDType;
  results: TensorComparison[];
  /** Tensors in the expect file this check does not know. */
  skipped: string[];
  ok: boolean;
}

// bf16 rounds every weight and matmul input to 8 bits of mantissa: relative errors of ~1e-2 are
// expected (PyTorch's own bf16 autocast against float64 reaches 1.6e-2 on logits and up to 7.8e-2
// on individual grads of these fixtures, see test/fixtures/README.md), so 1e-1 flags real bugs only.
export function defaultTolerance(dtype: BaseDType): number {
  if (dtype === 'f32') return 1e-4;
  if (dtype === 'bf16' || dtype === 'f16') return 1e-1;
  return 3e-1;
}

type TensorKind = 'logits' | 'loss' | 'grads';

/**
 * The bf16 bound an expect file states for one kind of tensor (scripts/fixtures/make_llama_fixtures.py
 * writes max(2 × torch autocast's own bf16 error against the float64 answer, 2^-8)); undefined when
 * the file states none (the OPT fixtures) or the value is not a positive number.
 */
function statedBf16Tolerance(metadata: Record<string, string>, kind: TensorKind): number | undefined {
  const v = Number(metadata[`bf16_tolerance_${kind}`]);
  return Number.isFinite(v) && v > 0 ? v : undefined;
}

function compare(name: string, ours: Float32Array, expected: Float32Array, tol: number, keep?: (i: number) => boolean): TensorComparison {
  if (ours.length !== expected.length) {
    return { name, maxAbs: Number.POSITIVE_INFINITY, rel: Number.POSITIVE_INFINITY, tol, ok: false };
  }
  let maxAbs = 0;
  let maxRef = 0;
  for (let i = 0; i < ours.length; i++) {
    if (keep && !keep(i)) continue;
    const d = Math.abs(ours[i] - expected[i]);
    maxAbs = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(maxAbs, d);
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  const rel = maxRef > 0 ? maxAbs / maxRef : maxAbs;
  return { name, maxAbs, rel, tol, ok: rel <= tol };
}

const toI32 = (data: ArrayLike<number | bigint>, where: string): Int32Array => {
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = Number(data[i]);
    if (!Number.isSafeInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw new LoraError('E_DTYPE', `${where}[${i}] = ${String(data[i])} is not a 32-bit integer`);
    out[i] = v;
  }
  return out;
};

export async function runCheck(o: CheckOptions): Promise<CheckReport> {
  const dtype = o.dtype ?? 'f32';
  const file = await SafetensorsFile.open(o.expect);
  const tolFor = (kind: TensorKind): number =>
    o.tolerance ?? (dtype === 'bf16' ? statedBf16Tolerance(file.metadata, kind) : undefined) ?? defaultTolerance(dtype);
  const model = await AutoModelForCausalLM.fromPretrained(o.model, { device: o.device ?? 'cpu', dtype });
  try {
    if (o.adapter) await model.loadAdapter(o.adapter);
    if (!file.has('input_ids')) throw new LoraError('E_TENSOR_NOT_FOUND', `${o.expect}: no input_ids`);
    const ids = await file.read('input_ids');
    if (ids.shape.length !== 2) throw new LoraError('E_SHAPE', `${o.expect}: input_ids must be [B, T], got [${ids.shape.join(', ')}]`);
    const [B, T] = ids.shape;
    const readInts = async (name: string) => {
      if (!file.has(name)) return undefined;
      const t = await file.read(name);
      if (t.shape.join() !== ids.shape.join()) throw new LoraError('E_SHAPE', `${o.expect}: ${name} has shape [${t.shape.join(', ')}], input_ids [${ids.shape.join(', ')}]`);
      return toI32(t.data as ArrayLike<number | bigint>, name);
    };
    const attentionMask = await readInts('attention_mask');
    const labels = (await readInts('labels')) ?? new Int32Array(B * T).fill(IGNORE_INDEX);
    // A left pad's query sees no real key: HF's eager softmax then spreads evenly over every key
    // (sdpa differs again), so its logits are an artefact and not compared. Right-padded queries
    // still see the real keys before them and are compared, as every other position.
    const seen = new Uint8Array(B * T);
    for (let b = 0; b < B; b++) for (let t = 0, any = 0; t < T; t++) seen[b * T + t] = any ||= attentionMask ? attentionMask[b * T + t] : 1;
    const wantLogits = file.has('logits');
    const logits = wantLogits ? new Float32Array(B * T * model.config.vocabSize) : undefined;
    model.lora?.zeroGrad(model.kernels);
    const r = model.step(
      { batch: B, seq: T, inputIds: toI32(ids.data as ArrayLike<number | bigint>, 'input_ids'), attentionMask, labels },
      { training: false, backward: model.lora !== undefined, gradScale: 1, logits },
    );
    const results: TensorComparison[] = [];
    const skipped: string[] = [];
    const grads = model.lora ? adapterTensors(model.lora, 'grads') : new Map();
    for (const name of file.keys()) {
      if (name === 'input_ids' || name === 'attention_mask' || name === 'labels') continue;
      const t = await file.read(name);
      const expected = toF32(t.dtype, t.data);
      if (name === 'logits' && logits) results.push(compare(name, logits, expected, tolFor('logits'), (i) => seen[Math.floor(i / model.config.vocabSize)] === 1));
      else if (name === 'loss') results.push(compare(name, new Float32Array([r.loss]), expected, tolFor('loss')));
      else if (name.startsWith('grad.') && grads.has(name.slice(5))) results.push(compare(name, grads.get(name.slice(5))!.data as Float32Array, expected, tolFor('grads')));
      else skipped.push(name);
    }
    return { device: model.device.backend, dtype, results, skipped, ok: results.every((x) => x.ok) };
  } finally {
    model.dispose();
    await file.close();
  }
}
