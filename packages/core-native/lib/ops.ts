// Typed wrappers of the native ops: the API the SDK builds the OPT model on. Every op takes
// NativeTensor handles and an options object; outputs are allocated when not given (pass `out`
// to reuse buffers; outputs made here live on the input's CUDA device for 'cuda' tensors, else on
// 'cpu'). `backend` picks the implementation: 'auto' (default: 'cuda' when the tensors are on a
// CUDA device, else 'cpu' when the CPU has AVX-512 BF16/VNNI, else 'ref'), 'ref' (scalar ground
// truth), 'cpu', 'emu' (the CUDA kernels on the CPU emulator) and 'cuda'. Host backends take
// host tensors ('cpu'/'emu'); 'cuda' takes tensors that all live on one CUDA device
// (ERR_LORA_DEVICE otherwise).
// An explicit backend that cannot run an op throws ERR_LORA_UNSUPPORTED; nothing falls back.
//
// Shapes: activations are row-major with any leading dims (rows = their product). Weights are
// [N, K] (out × in, as torch.nn.Linear). Gradient contract: parameter grads accumulate (+=),
// activation grads overwrite (=) unless `accumulate` is set.
import { loadAddon } from './loader.js';
import type { DeviceName, DType, NativeTensor } from './native.js';

export type OpBackend = 'auto' | 'ref' | 'cpu' | 'emu' | 'cuda';
export interface OpOptions {
  backend?: OpBackend;
}
/** Activation dtypes the matmul family reads and writes. */
export type ActDType = 'f32' | 'bf16';
/**
 * Dtypes a linear weight may have (i8 with per-row scales; int4/nf4 with per-block scales; bf16p:
 * bf16 pre-packed for the cpu backend's GEMM, rows % 16 == 0 and an even row length).
 */
export type WeightDType = 'f32' | 'f16' | 'bf16' | 'i8' | 'int4' | 'nf4' | 'bf16p';

type Fn = (...args: unknown[]) => unknown;
function op(name: string): Fn {
  const f = loadAddon().addon[name];
  if (typeof f !== 'function') throw Object.assign(new Error(`lora: the native addon lacks ${name}; rebuild @lora/core-native`), { code: 'ERR_LORA_NO_ADDON' });
  return f as Fn;
}
// Outputs the caller did not give: on the CUDA device of `like` (the op's main input) when it is a
// 'cuda' tensor, else host memory ('cpu'), where every host backend takes them.
function empty(dtype: DType, shape: number[], like: NativeTensor): NativeTensor {
  const device = like.device.startsWith('cuda') ? (like.device as DeviceName) : 'cpu';
  return loadAddon().addon.Tensor.empty(dtype, shape, device);
}
const lead = (t: NativeTensor): number[] => t.shape.slice(0, -1);
const rows = (t: NativeTensor): number => lead(t).reduce((a, b) => a * b, 1);

// ---- matmul ----

export interface MatmulXWtOptions extends OpOptions {
  bias?: NativeTensor;
  out?: NativeTensor;
  /** dtype of a new output (default: x's dtype). */
  outDtype?: ActDType;
  /** out += x·wᵀ (+ bias) instead of overwriting. */
  accumulate?: boolean;
  /**
   * Linear + ReLU in one pass: y = relu(x·wᵀ + bias), and these i64 words [ceil(rows·N/64)]
   * receive the keep bits (as `reluMask` writes them; for a bf16 y, of the rounded value).
   * Not with `accumulate`.
   */
  reluBits?: NativeTensor;
  /**
   * A sublayer's output projection with its dropout and residual add in one pass:
   * y = residual + dropout(x·wᵀ + bias) (f32 y and residual [..., N]; the dropout mask is the
   * `dropout` op's over the [rows, N] product). Not with `accumulate` or `reluBits`.
   */
  residual?: NativeTensor;
  /** The dropout of the `residual` form: p, seed, offset as for `dropout`. */
  dropout?: { p: number; seed: number; offset?: number };
}
/** y = x·wᵀ + bias. x [..., K] f32|bf16, w [N, K] any WeightDType; returns y [..., N]. */
export function matmulXWt(x: NativeTensor, w: NativeTensor, o: MatmulXWtOptions = {}): NativeTensor {
  const y = o.out ?? empty(o.outDtype ?? (o.residual ? 'f32' : (x.dtype as ActDType)), [...lead(x), w.shape[0]], x);
  const d = o.dropout;
  op('opMatmulXWt')(x, w, o.bias ?? null, y, o.accumulate ?? false, o.backend, o.reluBits ?? null, o.residual ?? null, d?.p ?? 0, d?.seed ?? 0, d?.offset ?? 0);
  return y;
}

export interface MatmulDYWOptions extends OpOptions {
  out?: NativeTensor;
  outDtype?: ActDType;
  accumulate?: boolean;
  /**
   * Keep bits (i64 [ceil(rows·K/64)], e.g. a `reluBits` of the layer before): dx = mask ⊙ (dy·w),
   * the ReLU backward fused into this product.
   */
  maskBits?: NativeTensor;
}
/** dx = dy·w (the input gradient of a linear layer). dy [..., N], w [N, K]; returns dx [..., K]. */
export function matmulDYW(dy: NativeTensor, w: NativeTensor, o: MatmulDYWOptions = {}): NativeTensor {
  const dx = o.out ?? empty(o.outDtype ?? (dy.dtype as ActDType), [...lead(dy), w.shape[1]], dy);
  op('opMatmulDYW')(dy, w, dx, o.accumulate ?? false, o.backend, o.maskBits ?? null);
  return dx;
}

export interface MatmulDWOptions extends OpOptions {
  /** dbias [N] f32 += Σ dy over rows. */
  dbias?: NativeTensor;
}
/** dw [N, K] f32 += dyᵀ·x (the weight gradient; accumulates). */
export function matmulDW(dy: NativeTensor, x: NativeTensor, dw: NativeTensor, o: MatmulDWOptions = {}): void {
  op('opMatmulDW')(dy, x, dw, o.dbias ?? null, o.backend);
}

export interface QuantizeOptions extends OpOptions {
  /** Elements per absmax scale for int4/nf4 (default 64). */
  blockSize?: number;
}
/**
 * Quantizes an f32 [N, K] weight: i8 (per-row absmax), int4 or nf4 (per-block absmax); or packs it
 * as bf16p (rounded to bf16, laid out as the cpu GEMM's B panels, N % 16 == 0 and K even): a
 * frozen weight packed once, so every X·Wᵀ on it skips the per-call packing (the 'cpu' and 'ref'
 * backends read bf16p; CUDA and the emulator take plain bf16).
 */
export function quantize(w: NativeTensor, dtype: 'i8' | 'int4' | 'nf4' | 'bf16p', o: QuantizeOptions = {}): NativeTensor {
  return op('opQuantize')(w, dtype, o.blockSize ?? 64, o.backend) as NativeTensor;
}
/** Any weight -> f32 [N, K] (tests, merging adapters). */
export function dequantize(w: NativeTensor, o: OpOptions = {}): NativeTensor {
  return op('opDequantize')(w, o.backend) as NativeTensor;
}

// ---- fused LoRA linear ----

export interface LoraCommon extends OpOptions {
  /** alpha / r (or alpha / sqrt(r) for rsLoRA). */
  scale: number;
  /** Dropout on the LoRA branch's input (default 0). */
  dropout?: number;
  /** Dropout seed and element offset (same seed + offset in forward and backward). */
  seed?: number;
  offset?: number;
  /** Stacked groups sharing x (q/k/v: 3): w [G*N, K], a [G*r, K], b [G*N, r]. */
  groups?: number;
}
export interface LoraForwardOptions extends LoraCommon {
  bias?: NativeTensor;
  out?: NativeTensor;
  outDtype?: ActDType;
  /** [rows, G*r] f32 buffer for the cached x·Aᵀ. */
  xa?: NativeTensor;
}
/**
 * y = x·wᵀ + bias + scale·(drop(x)·aᵀ)·bᵀ per group. Returns y and xa (= drop(x)·aᵀ, needed by
 * loraBackward).
 */
export function loraForward(x: NativeTensor, w: NativeTensor, a: NativeTensor, b: NativeTensor, o: LoraForwardOptions): { y: NativeTensor; xa: NativeTensor } {
  const y = o.out ?? empty(o.outDtype ?? (x.dtype as ActDType), [...lead(x), w.shape[0]], x);
  const xa = o.xa ?? empty('f32', [rows(x), a.shape[0]], x);
  op('opLoraForward')(x, w, o.bias ?? null, a, b, y, xa, o.scale, o.dropout ?? 0, o.seed ?? 0, o.offset ?? 0, o.groups ?? 1, o.backend);
  return { y, xa };
}

export interface LoraBackwardOptions extends LoraCommon {
  /** Input gradient buffer; false skips dx (first layer). */
  dx?: NativeTensor | false;
  dxDtype?: ActDType;
  /** dx += instead of = (x feeds several consumers). */
  accumulate?: boolean;
  /** Parameter grads (f32, shapes of a and b); they accumulate. Omit to skip. */
  da?: NativeTensor;
  db?: NativeTensor;
}
/** Backward of loraForward: dA, dB accumulate; returns dx (overwritten unless accumulate). */
export function loraBackward(dy: NativeTensor, x: NativeTensor, w: NativeTensor, a: NativeTensor, b: NativeTensor, xa: NativeTensor, o: LoraBackwardOptions): { dx?: NativeTensor } {
  const dx = o.dx === false ? null : (o.dx ?? empty(o.dxDtype ?? (dy.dtype as ActDType), [...lead(x), w.shape[1]], dy));
  op('opLoraBackward')(dy, x, w, a, b, xa, dx, o.da ?? null, o.db ?? null, o.scale, o.dropout ?? 0, o.seed ?? 0, o.offset ?? 0, o.groups ?? 1, o.accumulate ?? false, o.backend);
  return dx ? { dx } : {};
}

/** One row segment of `loraSegments`: rows [start, start + len) with their own adapter. */
export interface LoraSegmentSpec {
  start: number;
  len: number;
  /** [G*r, K] f32 (r may differ between segments). */
  a: NativeTensor;
  /** [G*N, r] f32. */
  b: NativeTensor;
  scale: number;
}
export interface LoraSegmentsOptions extends OpOptions {
  bias?: NativeTensor;
  out?: NativeTensor;
  outDtype?: ActDType;
  /** Stacked groups sharing x (q/k/v: 3), common to every segment. */
  groups?: number;
}
/**
 * The segmented LoRA forward of a continuous batch (S-LoRA / Punica SGMV; forward only, no dropout):
 * y = x·wᵀ + bias for every row, plus scale·(x_s·aᵀ)·bᵀ on each segment's rows (sorted, disjoint;
 * rows in no segment get the base only). Each row equals loraForward on that row with its
 * segment's adapter (matmulXWt without one), bit for bit on the same backend.
 */
export function loraSegments(x: NativeTensor, w: NativeTensor, segments: readonly LoraSegmentSpec[], o: LoraSegmentsOptions = {}): NativeTensor {
  const y = o.out ?? empty(o.outDtype ?? (x.dtype as ActDType), [...lead(x), w.shape[0]], x);
  const s = segments;
  op('opLoraSegments')(x, w, o.bias ?? null, y, s.map((g) => g.a), s.map((g) => g.b), s.map((g) => g.start), s.map((g) => g.len), s.map((g) => g.scale), o.groups ?? 1, o.backend);
  return y;
}

// ---- embedding, layernorm ----

export interface EmbeddingOptions extends OpOptions {
  /** Position ids (i32, same shape as ids) and the learned position table. */
  positions?: NativeTensor;
  posTable?: NativeTensor;
  /** Added to each position id (OPT: 2, the default). */
  posOffset?: number;
  out?: NativeTensor;
}
/** out[..., :] = table[ids] (+ posTable[positions + posOffset]). ids i32; returns [...ids.shape, C]. */
export function embedding(ids: NativeTensor, table: NativeTensor, o: EmbeddingOptions = {}): NativeTensor {
  const out = o.out ?? empty('f32', [...ids.shape, table.shape[1]], table);
  op('opEmbedding')(ids, table, out, o.positions ?? null, o.posTable ?? null, o.posOffset ?? 2, o.backend);
  return out;
}
export interface EmbeddingBackwardOptions extends OpOptions {
  dtable?: NativeTensor;
  positions?: NativeTensor;
  dposTable?: NativeTensor;
  posOffset?: number;
}
/** dtable[ids] += dout (and dposTable likewise). */
export function embeddingBackward(ids: NativeTensor, dout: NativeTensor, o: EmbeddingBackwardOptions): void {
  op('opEmbeddingBackward')(ids, dout, o.dtable ?? null, o.positions ?? null, o.dposTable ?? null, o.posOffset ?? 2, o.backend);
}

export interface LayerNormOptions extends OpOptions {
  gamma?: NativeTensor;
  beta?: NativeTensor;
  /** Default 1e-5 (OPT). */
  eps?: number;
  out?: NativeTensor;
  mean?: NativeTensor;
  rstd?: NativeTensor;
}
/** Layernorm over the last dim (f32). Returns y and the cached per-row mean and rstd. */
export function layerNorm(x: NativeTensor, o: LayerNormOptions = {}): { y: NativeTensor; mean: NativeTensor; rstd: NativeTensor } {
  const y = o.out ?? empty('f32', x.shape, x);
  const mean = o.mean ?? empty('f32', [rows(x)], x);
  const rstd = o.rstd ?? empty('f32', [rows(x)], x);
  op('opLayerNorm')(x, o.gamma ?? null, o.beta ?? null, y, mean, rstd, o.eps ?? 1e-5, o.backend);
  return { y, mean, rstd };
}
export interface LayerNormBackwardOptions extends OpOptions {
  gamma?: NativeTensor;
  dx?: NativeTensor;
  /** Affine grads accumulate when given (the frozen base skips them). */
  dgamma?: NativeTensor;
  dbeta?: NativeTensor;
}
/** Returns dx (overwritten). */
export function layerNormBackward(dy: NativeTensor, x: NativeTensor, mean: NativeTensor, rstd: NativeTensor, o: LayerNormBackwardOptions = {}): NativeTensor {
  const dx = o.dx ?? empty('f32', x.shape, x);
  op('opLayerNormBackward')(dy, x, o.gamma ?? null, mean, rstd, dx, o.dgamma ?? null, o.dbeta ?? null, o.backend);
  return dx;
}
export interface LayerNormBackwardFromOutputOptions extends OpOptions {
  beta?: NativeTensor;
  dx?: NativeTensor;
  dgamma?: NativeTensor;
  dbeta?: NativeTensor;
}
/**
 * The same backward from the forward's output y instead of its input: x̂ = (y - beta) / gamma, so
 * a caller that keeps y (a post-LN layer output is the next layer's input) need not keep x.
 * Every gamma must be nonzero (checked). Returns dx (overwritten).
 */
export function layerNormBackwardFromOutput(dy: NativeTensor, y: NativeTensor, gamma: NativeTensor, rstd: NativeTensor, o: LayerNormBackwardFromOutputOptions = {}): NativeTensor {
  const dx = o.dx ?? empty('f32', y.shape, y);
  op('opLayerNormBackwardFromOutput')(dy, y, gamma, o.beta ?? null, rstd, dx, o.dgamma ?? null, o.dbeta ?? null, o.backend);
  return dx;
}

// ---- attention ----

export interface AttentionCommon extends OpOptions {
  /** Query heads; the KV heads follow from k's width (k, v [B, Tk, kvHeads·headDim], GQA when fewer). */
  heads: number;
  /** Score scale (default head_dim^-0.5, OPT's q scaling). */
  scale?: number;
  /** Per-batch visible key count (i32 [B]): keys j >= kvLens[b] are padding. */
  kvLens?: NativeTensor;
  /** Attention mask over the keys (i32 [B, Tk], 0 = padding key), as Hugging Face's attention_mask. */
  mask?: NativeTensor;
  /**
   * Position of query row 0 among the keys: row i sees keys j <= qOffset + i (default Tk - T, the
   * queries are the last T positions; 0 in training, where Tk = T).
   */
  qOffset?: number;
}
export interface KvCache {
  /** [B, S, kvHeads·headDim] contiguous, q's dtype: rows [0, offset) hold earlier tokens' keys / values. */
  k: NativeTensor;
  v: NativeTensor;
  /** Tokens already cached (the new rows go to [offset, offset + T); offset + T <= S). */
  offset: number;
}
export interface AttentionOptions extends AttentionCommon {
  out?: NativeTensor;
  lse?: NativeTensor;
  /**
   * KV-cached decoding with the same op: k and v are the T new rows [B, T, kvHeads·headDim]; they
   * are written into the cache at `offset`, and the queries (at positions offset..offset+T-1)
   * attend causally over cache rows [0, offset + T) (`mask` is then [B, S]). Works on every backend.
   */
  cache?: KvCache;
}
/**
 * Causal attention with grouped KV heads. q [B, T, C] (C = heads·D), k, v [B, Tk, Ckv], all f32 or
 * all bf16 (widened exactly; column slices of a fused qkv buffer work). Returns o [B, T, C] f32
 * and lse [B, heads, T] (cached for the backward). Rows with no visible key give 0.
 */
export function attention(q: NativeTensor, k: NativeTensor, v: NativeTensor, o: AttentionOptions): { o: NativeTensor; lse: NativeTensor } {
  const out = o.out ?? empty('f32', q.shape, q);
  const lse = o.lse ?? empty('f32', [q.shape[0], o.heads, q.shape[1]], q);
  const c = o.cache;
  op('opAttention')(q, k, v, out, lse, o.heads, o.scale ?? null, o.kvLens ?? null, o.mask ?? null, o.backend, c ? c.offset : (o.qOffset ?? null), c?.k ?? null, c?.v ?? null);
  return { o: out, lse };
}
/** One request of `attentionRagged`: its rows of q/k/v/o and its own KV cache. */
export interface RaggedAttentionRow {
  /** Rows [start, start + len) of q, k, v and o are this request's new tokens. */
  start: number;
  len: number;
  /** [1, S, kvHeads·headDim] contiguous, q's dtype; the new rows go to [offset, offset + len). */
  cache: KvCache;
}
export interface AttentionRaggedOptions extends OpOptions {
  heads: number;
  /** Default 1/sqrt(headDim). */
  scale?: number;
  out?: NativeTensor;
  /** [heads·M] f32: request r's [heads, len] at start·heads. */
  lse?: NativeTensor;
}
/**
 * KV-cached attention over a continuous batch in one call (serving): q [M, C], k, v [M, Ckv] hold
 * every request's new rows; each request (sorted, disjoint rows, its own caches) is exactly
 * `attention` over its rows with `cache` - its k/v rows written at cache.offset, its queries
 * attending causally over its cache - bit for bit on the same backend. Returns o [M, C] f32.
 */
export function attentionRagged(q: NativeTensor, k: NativeTensor, v: NativeTensor, rows: readonly RaggedAttentionRow[], o: AttentionRaggedOptions): { o: NativeTensor; lse: NativeTensor } {
  const out = o.out ?? empty('f32', q.shape, q);
  const lse = o.lse ?? empty('f32', [o.heads * q.shape[0]], q);
  op('opAttentionRagged')(q, k, v, out, lse, o.heads, o.scale ?? null, rows.map((r) => r.start), rows.map((r) => r.len), rows.map((r) => r.cache.offset),
    rows.map((r) => r.cache.k), rows.map((r) => r.cache.v), o.backend);
  return { o: out, lse };
}
export interface AttentionBackwardOptions extends AttentionCommon {
  dq?: NativeTensor;
  dk?: NativeTensor;
  dv?: NativeTensor;
}
/**
 * dq, dk, dv (f32, overwritten; dk/dv summed over each KV head's query heads; they may be column
 * slices of one buffer). q, k, v as for `attention`. `out` is the forward's output, for
 * D = rowsum(dO∘O); pass null when it was not kept, and D is recomputed from q, k, v and lse (one
 * more pass over the keys).
 */
export function attentionBackward(dout: NativeTensor, q: NativeTensor, k: NativeTensor, v: NativeTensor, out: NativeTensor | null, lse: NativeTensor, o: AttentionBackwardOptions): { dq: NativeTensor; dk: NativeTensor; dv: NativeTensor } {
  const dq = o.dq ?? empty('f32', q.shape, q);
  const dk = o.dk ?? empty('f32', k.shape, k);
  const dv = o.dv ?? empty('f32', v.shape, v);
  op('opAttentionBackward')(dout, q, k, v, out, lse, dq, dk, dv, o.heads, o.scale ?? null, o.kvLens ?? null, o.mask ?? null, o.backend, o.qOffset ?? null);
  return { dq, dk, dv };
}

// ---- Llama-shaped blocks: RMSNorm, rotary embeddings, SwiGLU (f32) ----

export interface RmsNormOptions extends OpOptions {
  /** The scale w [width] (omit for none). */
  w?: NativeTensor;
  /** Default 1e-6 (Llama/Qwen's rms_norm_eps is read from config.json by the caller). */
  eps?: number;
  /**
   * Normalised width within each row (default: w's length, else the whole row). A head dim over a
   * q/k slice [..., heads·headDim] is QK-norm (Qwen3), one rstd per (row, head).
   */
  width?: number;
  /** Output (may be x itself: in place; the backward then needs x from elsewhere). */
  out?: NativeTensor;
  rstd?: NativeTensor;
}
/**
 * RMSNorm as transformers' LlamaRMSNorm computes it in f32: y = x · rsqrt(mean(x²) + eps) · w over
 * groups of `width`. x [..., N] f32 (column slices work). Returns y and the cached rstd [rows · N/width].
 */
export function rmsNorm(x: NativeTensor, o: RmsNormOptions = {}): { y: NativeTensor; rstd: NativeTensor } {
  const n = x.shape[x.shape.length - 1];
  const width = o.w ? o.w.shape[0] : (o.width ?? n);
  const y = o.out ?? empty('f32', x.shape, x);
  const rstd = o.rstd ?? empty('f32', [rows(x) * Math.max(1, Math.floor(n / width))], x);
  op('opRmsNorm')(x, o.w ?? null, y, rstd, o.eps ?? 1e-6, o.width ?? null, o.backend);
  return { y, rstd };
}
export interface RmsNormBackwardOptions extends OpOptions {
  w?: NativeTensor;
  width?: number;
  dx?: NativeTensor;
  /** dw [width] f32 accumulates when given (the frozen base skips it). */
  dw?: NativeTensor;
}
/** dx of `rmsNorm` (overwritten) from dy, the forward's input x and its rstd. */
export function rmsNormBackward(dy: NativeTensor, x: NativeTensor, rstd: NativeTensor, o: RmsNormBackwardOptions = {}): NativeTensor {
  const dx = o.dx ?? empty('f32', x.shape, x);
  op('opRmsNormBackward')(dy, x, o.w ?? null, rstd, dx, o.dw ?? null, o.width ?? null, o.backend);
  return dx;
}

export interface RopeOptions extends OpOptions {
  heads: number;
  /** Output (default: a new tensor; pass x itself to rotate in place). */
  out?: NativeTensor;
  /** Rotate by -θ: the backward (dx = rope(dy, {inverse: true})). */
  inverse?: boolean;
}
/**
 * Rotary embeddings, transformers' rotate-half layout (first half / second half of each head):
 * x [..., heads·D] f32 (q or k, column slices work), positions i32 [rows] (per row: left padding and
 * a decode offset are in the ids), invFreq f32 [D/2] (`ropeInvFreq`).
 */
export function rope(x: NativeTensor, positions: NativeTensor, invFreq: NativeTensor, o: RopeOptions): NativeTensor {
  const y = o.out ?? empty('f32', x.shape, x);
  op('opRope')(x, y, positions, invFreq, o.heads, o.inverse ?? false, o.backend);
  return y;
}
/** rope_scaling as config.json spells it (`rope_type` or the older `type`). */
export interface RopeScaling {
  rope_type?: string;
  type?: string;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}
/**
 * inv_freq[i] = theta^(-2i/dim) in f32, as transformers forms it (`default`), adjusted for
 * rope_scaling `llama3` (wavelengths above original_max/low_freq_factor divided by factor, below
 * original_max/high_freq_factor kept, a smooth blend between). Other types throw
 * ERR_LORA_UNSUPPORTED naming the supported ones.
 */
export function ropeInvFreq(dim: number, theta: number, scaling?: RopeScaling | null): Float32Array {
  const half = dim / 2;
  const inv = new Float32Array(half);
  // torch: 1 / (base ** (arange(0, dim, 2, int64).float() / dim)), all in f32.
  for (let i = 0; i < half; ++i) inv[i] = 1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / dim)));
  const type = scaling?.rope_type ?? scaling?.type ?? 'default';
  if (type === 'default') return inv;
  if (type !== 'llama3') {
    throw Object.assign(new Error(`rope_scaling type '${type}' is not supported (supported: default, llama3)`), { code: 'ERR_LORA_UNSUPPORTED' });
  }
  const factor = scaling!.factor ?? 8, lowF = scaling!.low_freq_factor ?? 1, highF = scaling!.high_freq_factor ?? 4;
  const oldCtx = scaling!.original_max_position_embeddings ?? 8192;
  const lowWavelen = oldCtx / lowF, highWavelen = oldCtx / highF;
  const out = new Float32Array(half);
  for (let i = 0; i < half; ++i) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowWavelen) out[i] = inv[i] / factor;
    else if (wavelen < highWavelen) out[i] = inv[i];
    else {
      const smooth = (oldCtx / wavelen - lowF) / (highF - lowF);
      out[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
    }
  }
  return out;
}

export interface SwiGluOptions extends OpOptions {
  out?: NativeTensor;
}
/** y = silu(gate) · up ([..., F] each; column slices of one gate_up buffer work): gate and up both f32 or both bf16, y f32. */
export function swiGlu(gate: NativeTensor, up: NativeTensor, o: SwiGluOptions = {}): NativeTensor {
  const y = o.out ?? empty('f32', gate.shape, gate);
  op('opSwiGlu')(gate, up, y, o.backend);
  return y;
}
export interface SwiGluBackwardOptions extends OpOptions {
  dgate?: NativeTensor;
  dup?: NativeTensor;
}
/** dgate = dy·up·silu'(gate), dup = dy·silu(gate) (both overwritten). */
export function swiGluBackward(gate: NativeTensor, up: NativeTensor, dy: NativeTensor, o: SwiGluBackwardOptions = {}): { dgate: NativeTensor; dup: NativeTensor } {
  const dgate = o.dgate ?? empty('f32', gate.shape, gate);
  const dup = o.dup ?? empty('f32', up.shape, up);
  op('opSwiGluBackward')(gate, up, dy, dgate, dup, o.backend);
  return { dgate, dup };
}

// ---- elementwise ----

export interface OutOptions extends OpOptions {
  /** Output buffer; may be the input itself (in place). */
  out?: NativeTensor;
}
/** y = max(x, 0) (f32). */
export function relu(x: NativeTensor, o: OutOptions = {}): NativeTensor {
  const y = o.out ?? empty('f32', x.shape, x);
  op('opRelu')(x, y, o.backend);
  return y;
}
/** dx = dy where y > 0 (takes the forward's output y). */
export function reluBackward(y: NativeTensor, dy: NativeTensor, o: OutOptions = {}): NativeTensor {
  const dx = o.out ?? empty('f32', y.shape, y);
  op('opReluBackward')(y, dy, dx, o.backend);
  return dx;
}
export interface ReluMaskOptions extends OutOptions {
  /** The keep mask: i64 [ceil(n/64)], bit i%64 of word i/64 set where y_i != 0. */
  bits?: NativeTensor;
}
/**
 * y = max(x, 0) and its keep mask, one bit per element: what the backward needs, in place of a
 * kept f32 y (a frozen linear after the relu needs no copy of its input).
 */
export function reluMask(x: NativeTensor, o: ReluMaskOptions = {}): { y: NativeTensor; bits: NativeTensor } {
  const y = o.out ?? empty('f32', x.shape, x);
  const bits = o.bits ?? empty('i64', [Math.ceil(x.numel / 64)], x);
  op('opReluMask')(x, y, bits, o.backend);
  return { y, bits };
}
/** dx = dy where the keep bit (from reluMask) is set. */
export function reluMaskBackward(bits: NativeTensor, dy: NativeTensor, o: OutOptions = {}): NativeTensor {
  const dx = o.out ?? empty('f32', dy.shape, dy);
  op('opReluMaskBackward')(bits, dy, dx, o.backend);
  return dx;
}
export interface AddOptions extends OutOptions {
  /** out = a + alpha·b (default 1). */
  alpha?: number;
}
/** Residual add / axpy (f32, equal element counts). */
export function add(a: NativeTensor, b: NativeTensor, o: AddOptions = {}): NativeTensor {
  const out = o.out ?? empty('f32', a.shape, a);
  op('opAdd')(a, b, out, o.alpha ?? 1, o.backend);
  return out;
}
/** out = alpha·x (f32). */
export function scale(x: NativeTensor, alpha: number, o: OutOptions = {}): NativeTensor {
  const out = o.out ?? empty('f32', x.shape, x);
  op('opScale')(x, out, alpha, o.backend);
  return out;
}
/** Converts between f32, f16 and bf16 (round to nearest even). */
export function cast(x: NativeTensor, dtype: 'f32' | 'f16' | 'bf16', o: OpOptions & { out?: NativeTensor } = {}): NativeTensor {
  const out = o.out ?? empty(dtype, x.shape, x);
  op('opCast')(x, out, o.backend);
  return out;
}
export interface DropoutOptions extends OutOptions {
  seed: number;
  /** Element offset added to the index (default 0); see ops.h for the Philox mapping. */
  offset?: number;
}
/** out = x·mask/(1-p), mask from Philox4x32-10(seed, index) — the backward is the same call on dy. */
export function dropout(x: NativeTensor, p: number, o: DropoutOptions): NativeTensor {
  const out = o.out ?? empty('f32', x.shape, x);
  op('opDropout')(x, out, p, o.seed, o.offset ?? 0, o.backend);
  return out;
}

// ---- loss ----

export interface CrossEntropyOptions extends OpOptions {
  /** Targets equal to this are not counted (default -100). */
  ignoreIndex?: number;
  /** Compute dh (default true); pass a tensor to reuse a buffer. */
  dh?: NativeTensor | boolean;
  /** Multiplies dh (e.g. 1/gradAccum). */
  gradScale?: number;
  /** Vocabulary rows per chunk (default 4096): memory is rows × chunk logits. */
  chunk?: number;
  /** Also write the full [rows, V] f32 logits (generation/tests). */
  logits?: NativeTensor | boolean;
  /** Per-row losses [rows] f32 (0 for ignored rows). */
  lossRows?: NativeTensor;
}
export interface CrossEntropyResult {
  /** Mean loss over counted rows (0 when none). */
  loss: number;
  count: number;
  dh?: NativeTensor;
  logits?: NativeTensor;
}
/**
 * Fused lm-head + cross-entropy: logits = h·wᵀ streamed over vocabulary chunks (the [rows, V]
 * logits never exist unless asked for). h [..., C] f32|bf16, w [V, C] any WeightDType, targets i32.
 */
export function crossEntropy(h: NativeTensor, w: NativeTensor, targets: NativeTensor, o: CrossEntropyOptions = {}): CrossEntropyResult {
  const dh = o.dh === false ? null : o.dh === true || o.dh === undefined ? empty('f32', [...lead(h), h.shape[h.shape.length - 1]], h) : o.dh;
  const logits = o.logits === true ? empty('f32', [...lead(h), w.shape[0]], h) : o.logits ? o.logits : null;
  const r = op('opCrossEntropy')(h, w, targets, dh, logits, o.lossRows ?? null, o.ignoreIndex ?? -100, o.gradScale ?? 1, o.chunk ?? 4096, o.backend) as { loss: number; count: number };
  const res: CrossEntropyResult = { loss: r.loss, count: r.count };
  if (dh) res.dh = dh;
  if (logits) res.logits = logits;
  return res;
}

// ---- optimiser ----

export interface AdamWOptions extends OpOptions {
  lr: number;
  /** 1-based step for bias correction. */
  step: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Multiplies the gradient first (clipping, loss scaling). */
  gradScale?: number;
}
/** One AdamW step in place on param, m, v (PyTorch semantics; f32). */
export function adamw(param: NativeTensor, grad: NativeTensor, m: NativeTensor, v: NativeTensor, o: AdamWOptions): void {
  op('opAdamW')(param, grad, m, v, o.lr, o.beta1 ?? 0.9, o.beta2 ?? 0.999, o.eps ?? 1e-8, o.weightDecay ?? 0, o.step, o.gradScale ?? 1, o.backend);
}
/** Global L2 norm of f32 tensors (f64 accumulation). */
export function gradNorm(tensors: NativeTensor[], o: OpOptions = {}): number {
  return Math.sqrt(op('opSumSquares')(tensors, o.backend) as number);
}
/**
 * torch.nn.utils.clip_grad_norm_: scales every tensor in place by min(1, maxNorm/(norm+1e-6)).
 * Returns the norm before clipping and the factor applied.
 */
export function clipGradNorm(tensors: NativeTensor[], maxNorm: number, o: OpOptions = {}): { norm: number; factor: number } {
  const norm = gradNorm(tensors, o);
  const factor = Math.min(1, maxNorm / (norm + 1e-6));
  if (factor < 1) for (const t of tensors) scale(t, factor, { out: t, backend: o.backend });
  return { norm, factor };
}

// ---- introspection ----

export interface OpSupport {
  ok: boolean;
  reason: string;
}
/** Asks a backend whether it runs `op` for these dtypes and sizes (never throws for unknown backends). */
export function opSupports(backend: Exclude<OpBackend, 'auto'>, opName: string, dtypes: DType[], sizes: number[] = []): OpSupport {
  return op('opSupports')(backend, opName, dtypes, sizes) as OpSupport;
}
/** Threads of the cpu backend's pool (LORA_NUM_THREADS, default: logical cores), in [1, maxNumThreads()]. */
export function setNumThreads(n: number): void {
  op('setNumThreads')(n);
}
export function getNumThreads(): number {
  return op('getNumThreads')() as number;
}
