// The kernels the OPT model calls, as one narrow interface over @lora/core-native's ops, bound to
// one backend. Outputs are preallocated by the caller (the model reuses its buffers every step).
// Gradient contract, as in the native layer: parameter grads (dA, dB) accumulate; activation grads
// (dX) overwrite unless `accumulate` is set.
import type { NativeTensor } from '@lora/core-native';

export interface DropoutSpec {
  p: number;
  seed: number;
  offset?: number;
}

/** A LoRA branch over G stacked groups (q/k/v: G = 3) sharing one input. */
export interface LoraSpec {
  a: NativeTensor; // [G*r, K] f32
  b: NativeTensor; // [G*N, r] f32
  scale: number;
  groups: number;
  dropout?: DropoutSpec;
}

export interface Kernels {
  readonly backend: string;
  /** y[M,N] = x[M,K]·wᵀ + bias (+ LoRA when given; xa [M, G*r] is cached for the backward). */
  linear(x: NativeTensor, w: NativeTensor, bias: NativeTensor | undefined, y: NativeTensor, lora?: { spec: LoraSpec; xa: NativeTensor }): void;
  /** dx = dy·w (+ LoRA part; dA/dB accumulate into da/db). dx may be omitted (input needs no grad). */
  linearBackward(
    dy: NativeTensor,
    x: NativeTensor,
    w: NativeTensor,
    dx: NativeTensor | undefined,
    accumulate: boolean,
    lora?: { spec: LoraSpec; xa: NativeTensor; da: NativeTensor; db: NativeTensor },
  ): void;
  /** Linear + ReLU in one pass, no LoRA: y = relu(x·wᵀ + bias) and the relu keep bits. */
  linearRelu(x: NativeTensor, w: NativeTensor, bias: NativeTensor | undefined, y: NativeTensor, bits: NativeTensor): void;
  /**
   * A sublayer's output projection, its dropout and the residual add in one pass, no LoRA:
   * y = residual + dropout(x·wᵀ + bias) (y, residual f32).
   */
  linearResidual(
    x: NativeTensor, w: NativeTensor, bias: NativeTensor | undefined, y: NativeTensor, residual: NativeTensor,
    drop?: { p: number; seed: number; offset: number },
  ): void;
  /** dx = mask ⊙ (dy·w), no LoRA: a linear's input grad with the ReLU backward before it fused. */
  linearBackwardMasked(dy: NativeTensor, w: NativeTensor, dx: NativeTensor, bits: NativeTensor): void;
  /** out[m] = table[ids[m]] (+ posTable[pos[m]] when given). */
  embedding(ids: NativeTensor, table: NativeTensor, out: NativeTensor, pos?: { ids: NativeTensor; table: NativeTensor }): void;
  layerNorm(x: NativeTensor, gamma: NativeTensor | undefined, beta: NativeTensor | undefined, eps: number, y: NativeTensor, mean: NativeTensor, rstd: NativeTensor): void;
  /** dx = ∂/∂x (overwrites); gamma/beta are frozen, so their grads are not computed. */
  layerNormBackward(dy: NativeTensor, x: NativeTensor, gamma: NativeTensor | undefined, mean: NativeTensor, rstd: NativeTensor, dx: NativeTensor): void;
  /** The same from the forward's output y: x̂ = (y - beta) / gamma (every gamma nonzero). */
  layerNormBackwardFromOutput(dy: NativeTensor, y: NativeTensor, gamma: NativeTensor, beta: NativeTensor | undefined, rstd: NativeTensor, dx: NativeTensor): void;
  /** Causal attention over qkv [B*T, 3C] (q | k | v; f32 or bf16), key padding from mask [B*T] (i32, 0 = pad). */
  attention(qkv: NativeTensor, mask: NativeTensor | undefined, shape: { B: number; T: number; H: number; D: number }, scale: number, o: NativeTensor, lse: NativeTensor): void;
  /** dqkv [B*T, 3C] overwritten. o: the forward's output, or null when not kept (recomputed D). */
  attentionBackward(
    qkv: NativeTensor,
    mask: NativeTensor | undefined,
    shape: { B: number; T: number; H: number; D: number },
    scale: number,
    o: NativeTensor | null,
    lse: NativeTensor,
    dout: NativeTensor,
    dqkv: NativeTensor,
  ): void;
  /**
   * KV-cached attention for generation: appends the new tokens' k/v (column slices of qkv [B*Tq, 3C])
   * to kCache/vCache [B, S, C] at row `past`, then attends each new query over the cache (causal).
   */
  attentionDecode(qkv: NativeTensor, kCache: NativeTensor, vCache: NativeTensor, past: number, shape: { B: number; T: number; H: number; D: number }, scale: number, o: NativeTensor): void;
  relu(x: NativeTensor, y: NativeTensor): void;
  /** relu that also writes its keep mask (i64 [ceil(n/64)], one bit per element). */
  reluMask(x: NativeTensor, y: NativeTensor, bits: NativeTensor): void;
  /** dx = dy where the keep bit is set (the mask from reluMask). */
  reluMaskBackward(bits: NativeTensor, dy: NativeTensor, dx: NativeTensor): void;
  /** out = a + alpha·b. */
  add(a: NativeTensor, b: NativeTensor, out: NativeTensor, alpha?: number): void;
  dropout(x: NativeTensor, spec: DropoutSpec, out: NativeTensor): void;
  /**
   * Fused h·wᵀ + cross-entropy over vocabulary chunks. targets i32 [M] (−100 ignored).
   * Returns the summed loss and the counted tokens; dh (optional) gets gradScale·∂(mean loss)/∂h;
   * logits (optional, [M, V] f32) receives the logits.
   */
  crossEntropy(
    h: NativeTensor,
    w: NativeTensor,
    targets: NativeTensor,
    opts: { gradScale: number; dh?: NativeTensor; logits?: NativeTensor; chunk?: number },
  ): { lossSum: number; count: number };
  adamw(p: NativeTensor, g: NativeTensor, m: NativeTensor, v: NativeTensor, o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; gradScale: number; step: number }): void;
  sumSquares(x: NativeTensor): number;
  scale(x: NativeTensor, alpha: number, out: NativeTensor): void;
  /** out = x converted to out's dtype (f32/f16/bf16, round to nearest even). */
  cast(x: NativeTensor, out: NativeTensor): void;
  /**
   * f32 [rows, cols] → a quantized weight tensor (int8 per row, int4/nf4 per block), or bf16
   * pre-packed for the cpu backend's GEMM (bf16p; block unused).
   */
  quantize(w: NativeTensor, dtype: 'i8' | 'int4' | 'nf4' | 'bf16p', block: number): NativeTensor;
  /** Any weight → f32 [rows, cols]. */
  dequantize(w: NativeTensor): NativeTensor;
  zero(t: NativeTensor): void;
  /** Frees the kernels' own scratch buffers (the model calls it from its dispose()). */
  dispose(): void;
}
