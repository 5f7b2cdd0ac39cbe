// The op set of a LoRA training step, declared once. Every op is a plain function over raw host
// pointers, sizes and a small context, described by a parameter struct; each backend (ref = scalar
// ground truth, cpu = AVX-512 BF16/VNNI + threads; emu/cuda later) fills an OpTable with its
// implementations and answers supports() honestly. The binding validates everything before a call:
// kernels assume sizes are consistent, pointers are valid and outputs do not overlap inputs.
//
// Shape letters: M rows (tokens, B*T), K input features, N output features, C channels, r LoRA
// rank, G stacked LoRA groups (q/k/v), B batch, T sequence, H heads, D head dim, V vocabulary.
// All matrices are row-major with a leading dimension (elements between rows) >= their width.
//
// Dropout (every backend must give the same mask): Philox4x32-10 keyed by the 64-bit seed
// (key = {lo32(seed), hi32(seed)}). Element e (its logical row-major index in the [rows, cols]
// matrix being dropped, plus the caller's `offset`) uses counter {lo32(e/4), hi32(e/4), 0, 0} and
// output word u = out[e % 4]. The element is kept iff u >= threshold, threshold = min(2^32 - 1,
// floor(p * 2^32)) (p = 1 drops everything); kept elements are scaled by 1/(1-p).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../runtime/device.h"
#include "../runtime/dtype.h"
#include "op_list.h"

namespace lora::ops {

class ThreadPool;

// Per-call context. `pool` is the cpu backend's thread pool (null for ref).
struct Ctx {
  ThreadPool* pool = nullptr;
  // GPU backends: the device the op's tensors live on (-1: none) and that device's stream
  // (a cudaStream_t; null = the legacy default stream).
  int device = -1;
  void* stream = nullptr;
};

// A read-only row-major matrix of activations (f32 or bf16).
struct Mat {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t ld = 0;
};
// A writable one (f32 or bf16).
struct MutMat {
  void* data = nullptr;
  DType dtype = DType::F32;
  int64_t ld = 0;
};

// A linear layer's weight, logically [rows=N, cols=K] row-major (contiguous). f32/f16/bf16 plain;
// i8 with one f32 scale per row (w = q * scale / 127); int4/nf4 packed two per byte (first element
// in the high nibble) with one f32 absmax scale per `block` elements along the row
// (int4: w = (q - 8) * scale / 7, q in 0..15, so codes 1..15 span [-scale, scale] and 0 = -8/7;
//  nf4: w = NF4_TABLE[q] * scale).
struct Weight {
  DType dtype = DType::F32;
  const void* data = nullptr;
  const float* scales = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t block = 64;
};

extern const float kNF4Table[16];

struct Dropout {
  float p = 0.f;        // drop probability in [0, 1]
  uint64_t seed = 0;
  uint64_t offset = 0;  // added to the element index (lets one seed serve many tensors)
  bool active() const { return p > 0.f; }
};

// ---- matmul: the three layouts of a linear layer (f32 accumulation) ----
// Y[M,N] = X[M,K] · Wᵀ + bias (bias optional). Y overwritten, or += when accumulate.
// With relu_bits (ceil(M*N/64) words; not with accumulate): Y = relu(X·Wᵀ + bias), the linear+ReLU
// of an MLP in one pass, and bit (m*N + n) is the keep bit of the relu op (set iff the stored
// y > 0 or NaN; for a bf16 Y, the value after rounding).
// With residual (f32, row stride ld_residual; not with accumulate or relu_bits): Y = residual +
// drop(X·Wᵀ + bias), a sublayer's output projection, its dropout and the residual add in one pass;
// drop is the dropout op's mask over the [M, N] product (element index m*N + n + drop.offset).
struct MatmulXWt {
  int64_t M, K, N; Mat x; Weight w; const float* bias; MutMat y; bool accumulate; uint64_t* relu_bits = nullptr;
  const float* residual = nullptr; int64_t ld_residual = 0; Dropout drop{};
};
// dX[M,K] = dY[M,N] · W[N,K]. Activation grad: overwrites, or += when accumulate (X used twice).
// With mask_bits (ceil(M*K/64) words): the product is kept only where bit (m*K + k) is set
// (dX = mask ⊙ (dY·W) (+ dX)): fc2's backward with the ReLU backward before it in one pass.
struct MatmulDYW { int64_t M, N, K; Mat dy; Weight w; MutMat dx; bool accumulate; const uint64_t* mask_bits = nullptr; };
// dW[N,K] += dYᵀ · X (parameter grad: always accumulates, f32); dbias[N] += Σ_m dY (optional).
struct MatmulDW { int64_t M, N, K; Mat dy; Mat x; float* dw; int64_t ld_dw; float* dbias; };

// ---- quantization of a [rows, cols] f32 weight ----
// i8: scale[row] = absmax(row); q = round(w / scale * 127). int4/nf4: per block of `block`,
// scale = absmax; int4 q = clamp(round(w / scale * 7) + 8, 0, 15); nf4 q = nearest table entry.
struct Quantize { int64_t rows, cols, block; const float* src; DType dtype; void* packed; float* scales; };
// Weight -> f32 [rows, cols].
struct Dequantize { Weight w; float* dst; };

// ---- fused LoRA linear, G groups stacked along N (q/k/v: G = 3, one shared input X) ----
// Forward: for group g (output columns [g*N, (g+1)*N)):
//   XA = drop(X) · Aᵀ                      A[G*r, K]  ->  XA[M, G*r] (f32, CACHED for backward)
//   Y[:, g] = X · W_gᵀ + b_g + s · XA[:, g*r:(g+1)*r] · B_gᵀ     W[G*N, K], B[G*N, r], Y[M, G*N]
// One dropout mask (over X's [M, K] elements) is shared by all groups. Nothing else is cached;
// the backward regenerates the mask from the seed.
struct LoraFwd {
  int64_t M, K, N, r, G;
  Mat x; Weight w; const float* bias; const float* a; const float* b; float scale; Dropout drop;
  MutMat y; float* xa;
};
// Backward. Gradient contract: dA, dB ACCUMULATE (+=); dX OVERWRITES (or += when accumulate).
//   dXA[:, g] = s · dY[:, g] · B_g         (scratch, [M, G*r])
//   dB_g     += s · dY[:, g]ᵀ · XA[:, g]
//   dA_g     += dXA[:, g]ᵀ · drop(X)
//   dX        = dY · W + drop'(dXA · A)    (drop' = the same mask and 1/(1-p) scaling)
// dx may be null (first layer), dA/dB may be null (skipped).
struct LoraBwd {
  int64_t M, K, N, r, G;
  Mat dy; Mat x; Weight w; const float* a; const float* b; const float* xa; float scale; Dropout drop;
  MutMat dx; bool accumulate; float* da; float* db;
};

// ---- segmented LoRA linear: one base product, each row segment its own adapter (serving) ----
// S-LoRA / Punica's SGMV for a continuous batch whose rows carry different adapters. FORWARD ONLY
// (serving: no dropout, nothing cached, no backward). For the G groups stacked along N (as LoraFwd):
//   Y[:, g] = X · W_gᵀ + b_g                                     for every row
//   Y[m, g] += s_i · (X_m · A_iᵀ)[g*r_i:(g+1)*r_i] · B_{i,g}ᵀ     for the rows m of segment i
// Segments are sorted, disjoint row ranges [start, start + len); rows in none get the base only.
// Segment i's adapter: A [G*r_i, K], B [G*N, r_i] (f32), scale s_i; ranks may differ.
// Numerics (why the base is inside the op): every row is bit-identical to lora_fwd on that row
// with its segment's adapter (matmul_xwt for rows in no segment) on the same backend - the cpu
// kernel adds the low-rank term in the base product's own f32 accumulators before the bias and
// before the k-blocks' partial sums meet, so "base product, then += low-rank" would round
// differently; here the base GEMM runs once over every row and each row block of a segment
// finishes with its adapter's term (one pass over W for the whole batch).
struct LoraSegment {
  int64_t start, len, r;
  const float* a; const float* b; float scale;
};
struct LoraSegments {
  int64_t M, K, N, G;
  Mat x; Weight w; const float* bias; MutMat y;
  const LoraSegment* segs; int64_t nseg;
};

// ---- embedding: out[m, :] = table[ids[m], :] (+ pos_table[pos[m] + pos_offset, :]) ----
// Caches nothing (ids are the caller's). ids must be in [0, V) (checked by the binding). The token
// table is f32 or bf16 (`table_dtype`; bf16 rows are widened exactly), so a model can gather from
// the bf16 table its tied lm_head uses instead of keeping an f32 copy; positions are f32.
struct EmbeddingFwd {
  int64_t M, C, V, P; const int32_t* ids; const void* table; const int32_t* pos; const float* pos_table; int64_t pos_offset; float* out;
  DType table_dtype = DType::F32;
};
// Backward: dtable[ids[m]] += dout[m] (and dpos_table likewise). Parameter grads: ACCUMULATE.
struct EmbeddingBwd { int64_t M, C, V, P; const int32_t* ids; const int32_t* pos; int64_t pos_offset; const float* dout; float* dtable; float* dpos_table; };

// ---- layernorm over the last dim C: y = (x - mean) * rstd * gamma + beta ----
// Forward caches mean[M] and rstd[M] (f32). gamma/beta may be null (no affine).
struct LayerNormFwd { int64_t M, C; float eps; const float* x; const float* gamma; const float* beta; float* y; float* mean; float* rstd; };
// Backward: dX OVERWRITES; dgamma, dbeta ACCUMULATE when non-null (the frozen base passes null).
// From the output instead of the input: when `y` is set, x̂ = (y - beta) / gamma (gamma required,
// nonzero; beta may be null) and x, mean are unused - a post-LN model keeps the layer output
// (the next layer's input) anyway, so the LN input need not be kept too.
struct LayerNormBwd {
  int64_t M, C; const float* dy; const float* x; const float* gamma; const float* mean; const float* rstd; float* dx; float* dgamma; float* dbeta;
  const float* y = nullptr; const float* beta = nullptr;
};

// ---- causal multi-head attention with grouped KV heads and a query offset ----
// Query rows [B*T] hold H heads of D (C = H*D); key/value rows [B*Tk] hold Hkv heads of D
// (Ckv = Hkv*D, H % Hkv == 0): query head h reads KV head h / (H / Hkv) (GQA; Hkv = H is plain
// multi-head attention). Query row i of batch b sits at position q_offset + i (q_offset + T <= Tk)
// and sees keys j <= q_offset + i that are not padding: S = scale · q·kᵀ, O = softmax(S) · v,
// streamed over keys (no [T, Tk] buffer). Training is q_offset = 0, Tk = T; KV-cached decoding is
// the same op over a cache (below) with q_offset = the tokens already cached.
// Padding: key j of batch b is visible iff j < kv_len[b] (kv_len may be null = Tk) and
// (mask == null or mask[b*Tk + j] != 0). A query row with no visible key outputs 0.
// Caches lse[B, H, T] = log Σ exp(S) (-inf for rows with no visible key).
// q, k, v are all f32 or all bf16 (`qkv_dtype`; bf16 values are widened exactly and the math is
// the f32 math on them), so a model can keep the q/k/v a bf16 linear produces without a widened
// copy; o, lse and every gradient are f32.
// KV cache (forward only): with k_cache/v_cache set ([B, Tk, Ckv] contiguous, qkv_dtype), k and v
// are the T new rows: they are first copied into cache rows [q_offset, q_offset + T) of each batch,
// and the caches are then the keys and values (k, v, ldk, ldv are ignored after the copy).
struct AttnFwd {
  int64_t B, T, H, D; float scale;
  const void* q; int64_t ldq; const void* k; int64_t ldk; const void* v; int64_t ldv;
  const int32_t* kv_len; const int32_t* mask;
  float* o; int64_t ldo; float* lse;
  DType qkv_dtype = DType::F32;
  int64_t Hkv = 0, Tk = 0, q_offset = 0;  // always set by the caller (Hkv = H, Tk = T without GQA or offset)
  void* k_cache = nullptr; void* v_cache = nullptr;
};
// Backward: dq, dk, dv OVERWRITE (activation grads; dk, dv [B*Tk, Ckv], summed over the query
// heads of a group). Needs lse from the forward, and o for D_i = dO_i·O_i; with o = null,
// D_i = Σ_j P_ij (dO_i·V_j) is computed in a first pass over the keys instead (one more S and dP
// per block: the forward's O need not be kept).
struct AttnBwd {
  int64_t B, T, H, D; float scale;
  const void* q; int64_t ldq; const void* k; int64_t ldk; const void* v; int64_t ldv;
  const int32_t* kv_len; const int32_t* mask;
  const float* o; int64_t ldo; const float* lse; const float* dout; int64_t lddo;
  float* dq; int64_t lddq; float* dk; int64_t lddk; float* dv; int64_t lddv;
  DType qkv_dtype = DType::F32;
  int64_t Hkv = 0, Tk = 0, q_offset = 0;  // as AttnFwd
};
// The forward over its cache: copies the new k/v rows into the caches (host memory) and returns
// the same call with k/v pointing at the caches (Tk rows per batch). No cache: p unchanged.
AttnFwd attn_append_cache_host(const AttnFwd& p);
// Ragged attention (serving's continuous batch): one call over requests that each bring their own
// KV cache. Request r's T queries are rows [start, start + T) of q (its new keys and values the
// same rows of k and v); the call is, per request, exactly AttnFwd{B = 1, T, Tk = its cache's
// rows, q_offset = past} with its caches, o rows [start, start + T) and lse + start·H ([H, T]):
// attn_ragged_row below. Requests are sorted and disjoint in rows and have distinct caches (the
// binding checks), so a backend may run them in any order or at once; no kv_len or mask.
struct AttnRaggedRow {
  int64_t start, T, Tk, past;
  void* k_cache; void* v_cache;  // [1, Tk, Hkv·D] contiguous, qkv_dtype
};
struct AttnRagged {
  int64_t H, D, Hkv; float scale;
  const void* q; int64_t ldq; const void* k; int64_t ldk; const void* v; int64_t ldv;
  float* o; int64_t ldo; float* lse;
  DType qkv_dtype = DType::F32;
  const AttnRaggedRow* rows = nullptr;  // host memory, nrows entries
  int64_t nrows = 0;
};
inline AttnFwd attn_ragged_row(const AttnRagged& p, int64_t r) {
  const AttnRaggedRow& w = p.rows[r];
  const int64_t es = dtype_bits(p.qkv_dtype) / 8;
  AttnFwd f{};
  f.B = 1; f.T = w.T; f.H = p.H; f.D = p.D; f.scale = p.scale;
  f.q = static_cast<const char*>(p.q) + w.start * p.ldq * es; f.ldq = p.ldq;
  f.k = static_cast<const char*>(p.k) + w.start * p.ldk * es; f.ldk = p.ldk;
  f.v = static_cast<const char*>(p.v) + w.start * p.ldv * es; f.ldv = p.ldv;
  f.kv_len = nullptr; f.mask = nullptr;
  f.o = p.o + w.start * p.ldo; f.ldo = p.ldo; f.lse = p.lse + w.start * p.H;
  f.qkv_dtype = p.qkv_dtype; f.Hkv = p.Hkv; f.Tk = w.Tk; f.q_offset = w.past;
  f.k_cache = w.k_cache; f.v_cache = w.v_cache;
  return f;
}

// ---- elementwise (n elements, f32; y may equal x exactly = in place) ----
// relu: y = max(x, 0); caches nothing (the backward takes y). Backward: dx = dy * (y > 0), OVERWRITES.
// With `bits` (ceil(n/64) words), the forward also writes the keep mask - bit i%64 of word i/64
// set iff y_i != 0 (x_i > 0, or NaN) - and the backward takes it instead of y (y may be null):
// dx = bit ? dy : 0. One bit per element instead of a kept f32 output (a frozen fc2 needs no input).
struct Relu { int64_t n; const float* x; float* y; uint64_t* bits = nullptr; };
struct ReluBwd { int64_t n; const float* y; const float* dy; float* dx; const uint64_t* bits = nullptr; };
// out = a + alpha * b (residual add, axpy).
struct Add { int64_t n; const float* a; const float* b; float alpha; float* out; };
// out = alpha * x.
struct Scale { int64_t n; const float* x; float alpha; float* out; };
// dst = src converted (f32/f16/bf16 in any pair; RNE).
struct Cast { int64_t n; const void* src; DType src_dtype; void* dst; DType dst_dtype; };
// out = x * mask / (1 - p); x as [rows, cols] for the element index (see Dropout above). The
// backward is the same op applied to dY (same seed and offset).
struct DropoutOp { int64_t n; const float* x; Dropout drop; float* out; };

// ---- fused linear + cross-entropy over vocabulary chunks ----
// logits = H[M, C] · Wᵀ (W [V, C], any weight dtype). loss_m = lse_m - logits[m, target_m] for
// counted rows (target != ignore_index); loss = Σ loss_m / count. Streams over chunks of `chunk`
// vocabulary rows with an online log-sum-exp and an online gradient accumulator (the flash-attention
// rescaling trick), so only [M, chunk] logits ever exist. dh (optional) OVERWRITES with
// grad_scale * ∂loss/∂H; logits (optional, [M, V] f32) receives the full logits.
struct CrossEntropy {
  int64_t M, C, V, chunk; int32_t ignore_index; float grad_scale;
  Mat h; Weight w; const int32_t* targets;
  float* dh; float* logits; float* loss_rows;  // loss_rows [M]: per-row loss (0 for ignored)
  double* loss; int64_t* count;
};

// ---- optimiser ----
// AdamW (PyTorch semantics): g = grad * grad_scale; p *= 1 - lr*wd; m = b1 m + (1-b1) g;
// v = b2 v + (1-b2) g²; p -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps).
struct AdamW { int64_t n; float* p; const float* g; float* m; float* v; float lr, beta1, beta2, eps, wd, grad_scale; int64_t step; };
// Σ x² of n floats in f64 (for the global grad norm).
struct SumSquares { int64_t n; const float* x; double* out; };

// ---- Llama-shaped blocks: RMSNorm, rotary embeddings, SwiGLU (f32, rows with strides) ----
// RMSNorm over groups of C: row m of x holds G groups of C values (x [M, G*C], row stride ldx;
// G = 1 for a model's norms, G = heads for QK-norm over head_dim on a q/k slice of a qkv buffer).
// y = x · rstd · w, rstd = 1/sqrt(mean(x²) + eps) per (row, group), computed in f32 as transformers'
// LlamaRMSNorm does; w [C] may be null (no scale). Caches rstd[M*G] (index m*G + g). y may be x
// exactly (in place; the backward then needs x kept elsewhere).
struct RmsNormFwd { int64_t M, G, C; float eps; const float* x; int64_t ldx; const float* w; float* y; int64_t ldy; float* rstd; };
// Backward, x̂ = x·rstd, g = w∘dy: dx = rstd · (g - x̂ · mean(g∘x̂)) OVERWRITES; dw += Σ dy∘x̂ over
// every row and group ACCUMULATES when dw is non-null (the frozen base passes null).
struct RmsNormBwd {
  int64_t M, G, C; const float* dy; int64_t lddy; const float* x; int64_t ldx; const float* w; const float* rstd;
  float* dx; int64_t lddx; float* dw;
};
// Rotary embeddings, transformers' rotate-half layout: row m of x holds H heads of D (D even,
// half = D/2); for head element i < half, angle θ = inv_freq[i] · pos[m] (an f32 product, as
// transformers forms it), cos and sin of θ rounded to f32, and
//   y[i] = x[i]·cos - x[i + half]·sin,   y[i + half] = x[i + half]·cos + x[i]·sin.
// inverse = true rotates by -θ: the backward (dx = Rᵀ dy, the rotation being orthogonal). pos [M]
// are position ids per row (left padding and a decode offset are the caller's ids); inv_freq
// [half] is theta^(-2i/D), scaled as rope_scaling says (the caller's). y may be x (in place).
struct Rope { int64_t M, H, D; const float* x; int64_t ldx; float* y; int64_t ldy; const int32_t* pos; const float* inv_freq; bool inverse; };
// SwiGLU: y = silu(gate) · up, silu(g) = g / (1 + e^-g); gate, up [M, F] (column slices of one
// gate_up buffer work), caches nothing (the backward takes gate and up). gate and up are both f32
// or both bf16 (`gu_dtype`; bf16 widened exactly, f32 math), so a model under autocast keeps the
// bf16 gate|up its linear produced, and forward and backward read the same values; y is f32.
struct SwiGlu { int64_t M, F; const void* gate; int64_t ldg; const void* up; int64_t ldu; float* y; int64_t ldy; DType gu_dtype = DType::F32; };
// Backward: dgate = dy · up · silu'(gate), silu'(g) = s(g)·(1 + g·(1 - s(g))), s the sigmoid;
// dup = dy · silu(gate). Both OVERWRITE (f32); gate/up as the forward's.
struct SwiGluBwd {
  int64_t M, F; const void* gate; int64_t ldg; const void* up; int64_t ldu; const float* dy; int64_t lddy;
  float* dgate; int64_t lddg; float* dup; int64_t lddu; DType gu_dtype = DType::F32;
};

// ---- the backend interface ----
struct Support {
  bool ok = true;
  std::string reason;  // why not, when !ok
};

struct OpTable {
  const char* name;
  // op: the op's name as in lib/ops.ts (e.g. "matmul_xwt"); dtypes: the dtypes of its tensor
  // arguments in the order the binding lists them; shape: the op's size letters (M, K, N, ...).
  Support (*supports)(const std::string& op, const std::vector<DType>& dtypes, const std::vector<int64_t>& shape);
  // One function pointer per op of op_list.h, in its order.
#define LORA_OP_FIELD(field, Params, name) void (*field)(const Ctx&, const Params&);
  LORA_OP_LIST(LORA_OP_FIELD)
#undef LORA_OP_FIELD
};

const OpTable& ref_ops();
const OpTable& cpu_ops();  // only usable when cpu_features().has_avx512_backend()

// The table for a backend name ("ref", "cpu", "emu", "cuda"), or null with the reason.
const OpTable* find_backend(const std::string& name, std::string* reason);
// The context for a backend (cpu: its thread pool; cuda: the device of the op's tensors and its
// stream).
Ctx context_for(const OpTable& t);
Ctx context_for(const OpTable& t, Device d);

// Philox4x32-10 (see the mapping above).
void philox4x32_10(uint64_t seed, uint64_t counter, uint32_t out[4]);
// Keep-threshold for drop probability p.
uint32_t dropout_threshold(float p);
// 1 (keep, scaled by 1/(1-p)) or 0 for element index e (offset already added).
float dropout_factor(const Dropout& d, uint64_t e);

}  // namespace lora::ops
