// The kernels a model calls, as one narrow interface over @lora/core-native's ops, bound to one
// backend. Outputs are preallocated by the caller (the model reuses its buffers every step).
// Gradient contract, as in the native layer: parameter grads (dA, dB) accumulate; activation grads
// (dX) overwrite unless `accumulate` is set. A block asks for a linear through `linear()` /
// `linearGrad()` below, which pick the fused kernel when one exists for what it asks.
import { native, type DeviceName, type NativeTensor } from '@lora/core-native';

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

/** One layer's keys and values for decoding, [B, S, C] f32, filled up to row `past`. */
export interface KvCache {
  k: NativeTensor;
  v: NativeTensor;
  past: number;
}

/** Rows [start, start + len) of a batch and the LoRA branch they add (`Kernels.linearSegments`). */
export interface LoraSegment {
  start: number;
  len: number;
  spec: LoraSpec;
}

/** One request of `Kernels.attendRagged`: rows [start, start + len) of the batch and its KV cache. */
export interface RaggedKv {
  start: number;
  len: number;
  cache: KvCache;
}

export interface LoraArg {
  spec: LoraSpec;
  xa: NativeTensor;
}

export interface Kernels {
  readonly backend: string;
  /** y[M,N] = x[M,K]·wᵀ + bias (+ LoRA when given; xa [M, G*r] is cached for the backward). */
  linear(x: NativeTensor, w: NativeTensor, bias: NativeTensor | undefined, y: NativeTensor, lora?: { spec: LoraSpec; xa: NativeTensor }): void;
  /**
   * Serving's segmented LoRA forward (S-LoRA / Punica SGMV, no dropout, no backward): y = x·wᵀ + bias
   * over every row in one base product, plus each segment's scale·(x_s·Aᵀ)·Bᵀ on its rows (sorted,
   * disjoint; rows in no segment get the base only). Each row is bit-identical to `linear` on that
   * row with its segment's LoRA (without one: the plain linear). Every spec has the same groups.
   */
  linearSegments(x: NativeTensor, w: NativeTensor, bias: NativeTensor | undefined, y: NativeTensor, segments: readonly LoraSegment[]): void;
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
  /**
   * Causal attention over qkv [B*T, 3C] (q | k | v; f32 or bf16), key padding from mask [B*T] (i32,
   * 0 = pad). With `cache` (decoding), the new tokens' k/v are appended to kCache/vCache [B, S, C]
   * at row `past` and the queries (positions past..past+T-1) attend over the cache; lse and mask are
   * then unused.
   */
  attention(
    qkv: NativeTensor, mask: NativeTensor | undefined, shape: { B: number; T: number; H: number; D: number }, scale: number, o: NativeTensor, lse: NativeTensor,
    cache?: KvCache,
  ): void;
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
   * The same as `attention` with a cache; kept for callers written before it took one.
   */
  attentionDecode(qkv: NativeTensor, kCache: NativeTensor, vCache: NativeTensor, past: number, shape: { B: number; T: number; H: number; D: number }, scale: number, o: NativeTensor): void;
  /**
   * Causal attention over separate q [B*T, H·D] and k, v [B*T, Hkv·D] (f32; grouped KV heads when
   * Hkv < H: each KV head serves H/Hkv query heads). mask and cache as for `attention`.
   */
  attend(
    q: NativeTensor, k: NativeTensor, v: NativeTensor, mask: NativeTensor | undefined, shape: { B: number; T: number; H: number; D: number }, scale: number,
    o: NativeTensor, lse: NativeTensor, cache?: KvCache,
  ): void;
  /**
   * `attend` with a cache over a continuous batch, in one call: q [M, H·D], k, v [M, Hkv·D] hold
   * every request's new rows; each request (sorted, disjoint rows) writes its k/v rows into its own
   * cache at its past and its queries attend over that cache. Each request's o rows (and its lse
   * [H, len] at start·H of lse [H·M]) are bit for bit `attend` on its rows with its cache.
   */
  attendRagged(q: NativeTensor, k: NativeTensor, v: NativeTensor, rows: readonly RaggedKv[], shape: { H: number; D: number }, scale: number, o: NativeTensor, lse: NativeTensor): void;
  /** dq, dk, dv of `attend` (overwritten; dk/dv summed over each KV head's query heads). o: null when not kept. */
  attendBackward(
    dout: NativeTensor, q: NativeTensor, k: NativeTensor, v: NativeTensor, o: NativeTensor | null, lse: NativeTensor, mask: NativeTensor | undefined,
    shape: { B: number; T: number; H: number; D: number }, scale: number, dq: NativeTensor, dk: NativeTensor, dv: NativeTensor,
  ): void;
  /** RMSNorm y = x·rsqrt(mean(x²) + eps)·w in f32 over groups of `width` (default: the row); rstd [rows·groups] cached. */
  rmsNorm(x: NativeTensor, w: NativeTensor | undefined, eps: number, y: NativeTensor, rstd: NativeTensor, width?: number): void;
  /** dx of rmsNorm (overwritten); the frozen w gets no grad. */
  rmsNormBackward(dy: NativeTensor, x: NativeTensor, w: NativeTensor | undefined, rstd: NativeTensor, dx: NativeTensor, width?: number): void;
  /** Rotary embeddings (rotate-half layout) of x [M, heads·D] by positions i32 [M] and invFreq f32 [D/2]; inverse = the backward. y may be x. */
  rope(x: NativeTensor, y: NativeTensor, positions: NativeTensor, invFreq: NativeTensor, heads: number, inverse: boolean): void;
  /** y = silu(gate)·up. */
  swiGlu(gate: NativeTensor, up: NativeTensor, y: NativeTensor): void;
  /** dgate = dy·up·silu'(gate), dup = dy·silu(gate) (overwritten). */
  swiGluBackward(gate: NativeTensor, up: NativeTensor, dy: NativeTensor, dgate: NativeTensor, dup: NativeTensor): void;
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

/** What a block asks of a linear y = x·Wᵀ + b; `linear()` picks the kernel. */
export interface LinearOptions {
  /** A LoRA branch (xa [M, G·r] cached for the backward). */
  lora?: LoraArg;
  /** ReLU on the output, its keep mask written to bits (i64 [ceil(M·N/64)]). */
  relu?: { bits: NativeTensor };
  /** y = residual + dropout(x·Wᵀ + b): a sublayer's output projection and its residual add (f32). */
  residual?: NativeTensor;
  /** The residual form's dropout (its backward is the same mask on the grad). */
  dropout?: DropoutSpec & { offset: number };
}

/**
 * The fusion choices, in one place: without a LoRA branch the base product carries the ReLU (its
 * bits) or the dropout + residual add in its epilogue; with one, the LoRA forward runs and the
 * separate ops follow (bit-identical either way). The residual form's LoRA product goes to a
 * transient [M, N] buffer.
 */
export function linear(k: Kernels, x: NativeTensor, w: NativeTensor, bias: NativeTensor | undefined, y: NativeTensor, o: LinearOptions = {}): void {
  if (o.relu && o.residual) throw new Error('linear: relu and residual cannot be combined');
  if (o.dropout && !o.residual) throw new Error('linear: dropout is only fused with a residual add');
  if (!o.lora) {
    if (o.relu) k.linearRelu(x, w, bias, y, o.relu.bits);
    else if (o.residual) k.linearResidual(x, w, bias, y, o.residual, o.dropout);
    else k.linear(x, w, bias, y);
    return;
  }
  if (!o.residual) {
    k.linear(x, w, bias, y, o.lora);
    if (o.relu) k.reluMask(y, y, o.relu.bits);
    return;
  }
  using proj = native().Tensor.empty('f32', y.shape, y.device as DeviceName);
  k.linear(x, w, bias, proj, o.lora);
  if (o.dropout) k.dropout(proj, o.dropout, proj);
  k.add(o.residual, proj, y);
}

/** What a block asks of a linear's backward (dx = dy·W, + LoRA grads); `linearGrad()` picks the kernel. */
export interface LinearGradOptions {
  lora?: LoraArg & { da: NativeTensor; db: NativeTensor };
  /** dx = mask ⊙ (dy·W): the backward of a ReLU that produced this linear's input (its keep bits). */
  reluBits?: NativeTensor;
  /** Add onto dx instead of overwriting it. */
  accumulate?: boolean;
}

/** The backward's fusion choice: a ReLU mask rides the base dX product when there is no LoRA branch. */
export function linearGrad(k: Kernels, dy: NativeTensor, x: NativeTensor, w: NativeTensor, dx: NativeTensor | undefined, o: LinearGradOptions = {}): void {
  const acc = o.accumulate ?? false;
  if (o.reluBits && (acc || !dx)) throw new Error('linearGrad: a ReLU mask needs a dx that is overwritten');
  if (o.reluBits && !o.lora) {
    k.linearBackwardMasked(dy, w, dx!, o.reluBits);
    return;
  }
  k.linearBackward(dy, x, w, dx, acc, o.lora);
  if (o.reluBits) k.reluMaskBackward(o.reluBits, dx!, dx!);
}
