// The cpu backend's blocked GEMM: C[M, N] (+)= Σ_segments A_s · B_sᵀ, f32 accumulation, with
// operands decoded while packing (bf16 pairs for vdpbf16ps, or f32 for FMA), so quantised
// weights are never dequantised in full. Each operand is packed once per call (in parallel), then
// threads share the packed A and B across (M-block, N-block) tiles.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "../../ops/ops.h"

namespace lora::ops::cpu {

// An operand: element (outer i, reduction j). Stored row-major with leading dimension ld:
// at data[i*ld + j] (k_major = false) or data[j*ld + i] (k_major = true). Any weight dtype;
// i8 scales per stored row, int4/nf4 scales per `block` stored elements. Decoded values are
// multiplied by `scale` and by the dropout factor of stored element (row, col), whose index is
// drop.offset + row*drop_ld + col. When mask_bits is set, the keep decision of that element is
// bit (row*drop_ld + col) of mask_bits instead (a mask made once by dropout_bits, offset included),
// and a kept element is scaled by 1/(1 - drop.p) (by 1 when drop is inactive: a plain mask).
struct Src {
  DType dtype = DType::F32;
  const void* data = nullptr;
  const float* scales = nullptr;
  int64_t block = 64;
  int64_t ld = 0;
  bool k_major = false;
  float scale = 1.f;
  Dropout drop;
  int64_t drop_ld = 0;
  const uint64_t* mask_bits = nullptr;
  // bf16p only: the weight's row count (its panel widths depend on it).
  int64_t bf16p_rows = 0;
};

// Rows [m0, m1) of a segment with row parts (below): their own A (rows counted from m0), B, K.
struct RowPart {
  int64_t m0, m1;
  Src a, b;
  int64_t K;
  int64_t group_cols = 0;  // as Segment::group_cols
};

struct Segment {
  Src a, b;
  int64_t K;
  // Grouped columns (a stacked LoRA product): when group_cols > 0 (a multiple of 64), output
  // column n only sees reduction [g*K, (g+1)*K) of A, g = n / group_cols; A then has G*K columns
  // (its Src describes all of them) while B has K.
  int64_t group_cols = 0;
  // Masked contribution: when c_mask is set, this segment adds keep·A·Bᵀ only where bit
  // (m*c_mask_ld + n) of c_mask is set (dropout applied to the product, e.g. dX of a LoRA branch).
  const uint64_t* c_mask = nullptr;
  int64_t c_mask_ld = 0;
  float c_mask_keep = 1.f;
  // Row parts (the segmented LoRA forward: one adapter per row segment): when set, a, b and K are
  // unused; rows of part i add part i's A·Bᵀ, rows in no part nothing. Only as the last of two or
  // more segments, each part short enough (K ≤ one k-block) to ride as the tail of the segment
  // before it: then every row gets exactly the arithmetic of a gemm over {that segment, its part}.
  // Parts sorted by m0 and disjoint.
  const std::vector<RowPart>* parts = nullptr;
};

enum class Precision { BF16, F32 };

// A callback run by the task of each block of rows [m0, m1) after segments [0, after) and
// before the rest, while that block's rows of the earlier segments' A are in cache; it may write
// the rows [m0, m1) of a later segment's A (which must then be usable in place: bf16 pairs or f32
// rows, no scale, no dropout). A gemm with a hook gives each task a block of rows and all columns;
// `thread` is then in [0, pool size) and always sees the same row blocks in the same order (for
// per-index partial sums that reduce deterministically).
struct GemmHook {
  size_t after = 0;
  std::function<void(int64_t m0, int64_t m1, int thread)> fn;
};

// Where the finished product goes when it is not C itself: each task computes its tile into a
// per-thread f32 buffer (bias included), then per element v: v = 0 where the keep bit (m*N + n)
// of `mask` is clear; v = residual + drop(v) when residual is set; v += the old output when
// accumulate; stored to `out` (f32, or bf16 rounded RNE); with relu_bits, relu on the stored value
// and its keep bit (m*N + n) written (set iff > 0 or NaN; whole words per tile, so N % 64 == 0 and
// no accumulate). The tile is still in L2, so this costs no extra pass over memory.
struct Epilogue {
  MutMat out;
  const uint64_t* mask = nullptr;
  uint64_t* relu_bits = nullptr;
  // out = residual + drop(v) (f32 out; drop over element index m*N + n, as the dropout op).
  const float* residual = nullptr;
  int64_t ld_residual = 0;
  Dropout drop;
};

// C (f32, ldc) for rows [0, M) and columns [0, N). If !accumulate the first segment overwrites
// C (plus bias[n] when given), else everything adds to C. With epi, C/ldc are unused and the
// product goes through the epilogue (accumulate then means += epi->out).
void gemm(const Ctx& ctx, int64_t M, int64_t N, const std::vector<Segment>& segs, float* C, int64_t ldc,
          bool accumulate, const float* bias, Precision prec, const GemmHook* hook = nullptr, const Epilogue* epi = nullptr);

// The k-steps of one k-block (bf16 pairs or f32 k): products over longer reductions store each
// block's sum and add the next block's to it (what a kernel reproducing gemm()'s rounding needs).
int64_t gemm_kblock(Precision prec);

// Stored row `row`, columns [c0, c0 + len) of src as f32 (scale and dropout applied).
void decode_row(const Src& s, int64_t row, int64_t c0, int64_t len, float* out);

// Multiplies out[i] by the dropout factor of element index d.offset + first + i (vectorised
// Philox4x32-10, 16 counters at a time; the same mask as dropout_factor).
void apply_dropout(float* out, int64_t len, const Dropout& d, uint64_t first);

// Keep bits of elements d.offset + first + [0, len): bit i of bits[i / 64]. bits needs
// (len + 63) / 64 + 1 words (the last one is zeroed padding).
void dropout_bits(const Dropout& d, uint64_t first, int64_t len, uint64_t* bits);

// out[i] = bit (bit0 + i) of bits ? out[i] * keep : 0.
void apply_mask_bits(float* out, int64_t len, const uint64_t* bits, uint64_t bit0, float keep);

// The factor a kept element of dropout d is scaled by: 1/(1 - p) (0 when everything is dropped).
inline float keep_scale(const Dropout& d) { return d.p < 1.f ? 1.f / (1.f - d.p) : 0.f; }

Src weight_src(const Weight& w, bool k_major);
// Packs an f32 weight [N, K] (N % 16 == 0, K even) into bf16p (dtype.h): the B panels gemm()
// would make of it on every call, rounded to bf16 (RNE) once.
void pack_bf16p(const Ctx& ctx, const float* src, int64_t N, int64_t K, void* dst);
// Rows [row0, row0 + rows) of a weight as a weight of its own.
Weight weight_rows(const Weight& w, int64_t row0, int64_t rows);
Src mat_src(const Mat& m, bool k_major);

// Precision the cpu backend computes in: bf16 pairs (vdpbf16ps, f32 accumulation) when the
// activation is bf16 or the weight is bf16/i8/int4/nf4; f32 FMA for f32 activations with
// f32/f16 weights (f16 does not fit in bf16 without rounding).
Precision precision_for(DType act, DType w);

}  // namespace lora::ops::cpu
