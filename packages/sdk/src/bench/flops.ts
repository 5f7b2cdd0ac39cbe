// Model FLOPs per trained token and a same-run throughput reference for MFU.
import { native } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import type { Kernels } from '../model/kernels.js';
import type { LoraAdapter } from '../model/lora.js';
import type { CausalLM } from '../models/causal-lm.js';

/**
 * FLOPs of one LoRA training token (DESIGN.md): 4·N_base (forward + input grads of frozen weights,
 * no weight grads) + 6·N_lora + 12·L·s·d attention (s = seq, d = hidden), plus the lm_head.
 */
export function flopsPerToken(c: OptConfig, lora: LoraAdapter | undefined, seq: number): number {
  const C = c.hiddenSize;
  const F = c.ffnDim;
  const E = c.wordEmbedProjDim;
  const perLayer = 4 * C * C + 2 * C * F;
  let nBase = c.numHiddenLayers * perLayer + c.vocabSize * E;
  if (E !== C) nBase += 2 * C * E;
  const nLora = lora?.trainableParameters() ?? 0;
  return 4 * nBase + 6 * nLora + 12 * c.numHiddenLayers * seq * C;
}

/**
 * The same count for any family from its parameter table: N_base is every linear weight plus the
 * lm_head product (vocab × hidden, tied or not), and attention's width is q_proj's output
 * (heads × head_dim, which qwen3 sets apart from hidden).
 */
export function tableFlopsPerToken(m: CausalLM, seq: number): number {
  let nBase = m.config.vocabSize * m.config.hiddenSize;
  let attnWidth = m.config.hiddenSize;
  for (const p of m.params) {
    if (!p.quantizable) continue;
    nBase += p.shape[0] * p.shape[1];
    if (p.layer === 0 && p.lora?.target === 'q_proj') attnWidth = p.shape[0];
  }
  const nLora = m.lora?.trainableParameters() ?? 0;
  return 4 * nBase + 6 * nLora + 12 * m.config.numHiddenLayers * seq * attnWidth;
}

/**
 * GFLOP/s of the training device's bf16 matmul on a square 1024 problem, measured now through the
 * same kernels the model uses: the yardstick MFU is quoted against when no ISA peak is given.
 */
export function measureMatmulGflops(k: Kernels, device: string, n = 1024, reps = 3): number {
  const { Tensor } = native();
  const mem = device === 'ref' ? 'cpu' : device;
  using x = Tensor.fromArray(new Float32Array(n * n).fill(0.5), [n, n], 'f32', mem as 'cpu');
  using w = Tensor.fromArray(new Float32Array(n * n).fill(0.25), [n, n], 'bf16', mem as 'cpu');
  using y = Tensor.empty('f32', [n, n], mem as 'cpu');
  k.linear(x, w, undefined, y);
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    k.linear(x, w, undefined, y);
    best = Math.min(best, performance.now() - t);
  }
  return (2 * n * n * n) / (best / 1000) / 1e9;
}

/** Dense bf16 tensor-core peaks (TFLOP/s) of common GPUs, from their data sheets, for GPU MFU. */
const GPU_BF16_TFLOPS: [RegExp, number][] = [
  [/H200|H100/i, 989],
  [/A100/i, 312],
  [/L40S/i, 362],
  [/L4\b/i, 121],
  [/A10G?\b/i, 125],
  [/RTX 4090/i, 165],
];

export interface PeakMeasurement {
  gflops: number;
  /** How the figure was obtained, for the report. */
  source: string;
}

/**
 * The peak MFU is quoted against: on the AVX-512 CPU backend the register-blocked vdpbf16ps (bf16
 * base) or FMA (f32 base) loop measured now on every pool thread; on a GPU the data-sheet bf16
 * tensor-core peak; otherwise the bf16 matmul throughput measured through the model's kernels.
 */
export function measurePeak(k: Kernels, backend: string, device: string, baseDtype: string): PeakMeasurement {
  const addon = native() as unknown as Record<string, unknown>;
  if (backend === 'cpu' && typeof addon.benchPeak === 'function') {
    const benchPeak = addon.benchPeak as (kind: string, threads: number, iters: number) => { gops: number };
    const threads = (addon.getNumThreads as () => number)();
    const kind = baseDtype === 'f32' ? 'f32' : 'bf16';
    let best = 0;
    for (let r = 0; r < 3; r++) best = Math.max(best, benchPeak(kind, threads, 2e6).gops);
    return { gflops: best, source: `${kind === 'f32' ? 'f32 FMA' : 'bf16 vdpbf16ps'} peak, ${threads} threads, measured in this run` };
  }
  if (backend === 'cuda') {
    const name = native().cudaInfo().deviceName;
    const hit = GPU_BF16_TFLOPS.find(([re]) => re.test(name));
    if (hit) return { gflops: hit[1] * 1000, source: `${name} dense bf16 tensor-core peak (data sheet)` };
  }
  return { gflops: measureMatmulGflops(k, device), source: 'bf16 1024³ matmul through the same kernels, measured in this run' };
}
