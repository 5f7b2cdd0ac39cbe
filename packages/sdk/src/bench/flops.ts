// Model FLOPs per trained token and a same-run throughput reference for MFU.
import { native } from '@lora/core-native';

import type { OptConfig } from '../config/opt-config.js';
import type { Kernels } from '../model/kernels.js';
import type { LoraAdapter } from '../model/lora.js';

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
