// Tensor-core GEMM for the three layouts of a linear layer (and the pieces of fused LoRA and
// linear + cross-entropy): C[M, N] (=, +=) alpha · A[M, K] · B[N, K]ᵀ (+ bias) with bf16 mma.sync
// m16n8k16 and f32 accumulation.
//
// Tiling: a 128-thread block computes a 64x64 tile of C; its 4 warps each own 32x32 (2 m16 x 4 n8
// mma tiles, 32 f32 accumulators per thread). K advances in 32-wide tiles through two shared
// buffers per operand (bf16, rows padded to 40 elements = 80 bytes so ldmatrix rows are 16-byte
// aligned and spread over banks). Operands are read k-major from shared memory with ldmatrix.x4
// (A: one 16x16 fragment, B: two n8 fragments per call).
//
// Operand sources (`Operand::kind`): an activation row-major [row][k] or transposed [k][row]
// (f32/f16/bf16, leading dimension), or a linear weight W[row][k] or Wᵀ (f32/f16/bf16/int8/int4/nf4,
// dequantized in registers with its scales). An operand that is bf16, k-contiguous and 16-byte
// aligned (pointer and leading dimension) is copied with cp.async (zero-filled tails) straight into
// the next shared buffer while the current one feeds the tensor cores; every other operand is
// loaded into registers for the next tile before the current tile's mma (converted to bf16 and
// stored after it), so global latency overlaps the math either way. Optional dropout of an operand
// (Philox, ops.h mapping) is applied on load; the epilogue applies alpha, bias, an output dropout
// mask and accumulation, and stores f32/bf16/f16. blockIdx.z selects one of Z independent problems
// (stacked LoRA groups) through per-operand element offsets.
#pragma once

#include "common.cuh"
#include "elementwise.cuh"

namespace lora::LORA_KNS {

constexpr int kGemmBM = 64, kGemmBN = 64, kGemmBK = 32, kGemmLd = kGemmBK + 8, kGemmThreads = 128;

enum OperandKind : int { kActRowK = 0, kActKRow = 1, kWeightRowK = 2, kWeightKRow = 3 };

struct Operand {
  int kind = kActRowK;
  const void* data = nullptr;  // activation data (kinds 0/1)
  ET type = ET::F32;
  int64_t ld = 0;
  WeightView w{};              // kinds 2/3
  int64_t zoff = 0;            // element offset per blockIdx.z (unpacked types only)
  DropoutArgs drop{};          // dropout on load; element index = source row * drop_ld + source col
  int64_t drop_ld = 0;
};

struct Epilogue {
  void* data = nullptr;
  ET type = ET::F32;
  int64_t ld = 0;
  int64_t zoff = 0;
  const float* bias = nullptr;  // [N], indexed by the output column
  float alpha = 1.f;
  bool accumulate = false;
  DropoutArgs drop{};           // output mask, element index = row * drop_ld + col
  int64_t drop_ld = 0;
  const float* row_scale = nullptr;  // with accumulate: C = row_scale[row]·C + new (online rescaling)
  const uint64_t* mask = nullptr;    // keep bit (row * mask_ld + col): the product is 0 where clear
  int64_t mask_ld = 0;
};

__device__ __forceinline__ int et_size(ET t) { return t == ET::F32 ? 4 : (t == ET::I8 ? 1 : 2); }

__device__ __forceinline__ float operand_elem(const Operand& o, int64_t row, int64_t k) {
  float v;
  switch (o.kind) {
    case kActRowK: v = load_elem(o.data, o.type, row * o.ld + k); break;
    case kActKRow: v = load_elem(o.data, o.type, k * o.ld + row); break;
    case kWeightRowK: v = weight_elem(o.w, row, k); break;
    default: v = weight_elem(o.w, k, row); break;
  }
  if (o.drop.p > 0.f) v *= dropout_factor(o.drop, static_cast<uint64_t>(o.kind == kActKRow ? k * o.drop_ld + row : row * o.drop_ld + k));
  return v;
}

// Register-staged tile: 64 x 32 elements, 16 per thread, held as 8 packed bf16 pairs (converted
// and dequantized on load, so the staging costs 8 registers per operand, not 16). k-contiguous
// sources are walked along k (coalesced), transposed ones along rows.
struct RegTile {
  uint32_t v[8];
};
__device__ __forceinline__ void tile_coords(int kind, int idx, int& r, int& c) {
  if (kind == kActRowK || kind == kWeightRowK) { r = idx / kGemmBK; c = idx % kGemmBK; }
  else { r = idx % kGemmBM; c = idx / kGemmBM; }
}
__device__ __forceinline__ void load_regs(const Operand& o, int64_t row0, int64_t rows, int64_t k0, int64_t K, RegTile& t) {
LORA_UNROLL
  for (int i = 0; i < 16; ++i) {
    int r, c;
    tile_coords(o.kind, static_cast<int>(threadIdx.x) + i * kGemmThreads, r, c);
    const int64_t gr = row0 + r, gk = k0 + c;
    const uint32_t b = f32_to_bf16_bits_rn((gr < rows && gk < K) ? operand_elem(o, gr, gk) : 0.f);
    if (i & 1) t.v[i >> 1] |= b << 16;
    else t.v[i >> 1] = b;
  }
}
__device__ __forceinline__ void store_regs(int kind, const RegTile& t, uint16_t* sm) {
LORA_UNROLL
  for (int i = 0; i < 16; ++i) {
    int r, c;
    tile_coords(kind, static_cast<int>(threadIdx.x) + i * kGemmThreads, r, c);
    sm[r * kGemmLd + c] = static_cast<uint16_t>(t.v[i >> 1] >> ((i & 1) * 16));
  }
}
// cp.async tile (bf16, k-contiguous, 16-byte aligned rows): 256 chunks of 8 elements, 2 per thread.
__device__ __forceinline__ void load_async(const Operand& o, int64_t row0, int64_t rows, int64_t k0, int64_t K, uint16_t* sm) {
  const uint16_t* base = static_cast<const uint16_t*>(o.kind == kWeightRowK ? o.w.data : o.data);
  const int64_t ld = o.kind == kWeightRowK ? o.w.cols : o.ld;
LORA_UNROLL
  for (int i = 0; i < 2; ++i) {
    const int idx = static_cast<int>(threadIdx.x) + i * kGemmThreads;
    const int r = idx >> 2, c = (idx & 3) * 8;
    const int64_t gr = row0 + r, gk = k0 + c;
    int64_t bytes = (gr < rows) ? (K - gk) * 2 : 0;
    bytes = bytes < 0 ? 0 : (bytes > 16 ? 16 : bytes);
    const uint16_t* src = bytes > 0 ? base + gr * ld + gk : base;
    ::lora::cuda::cp_async_16_zfill(sm + r * kGemmLd + c, src, static_cast<int>(bytes));
  }
}

// alpha, bias, output dropout, += and the typed store of one output element.
__device__ __forceinline__ void epilogue_store(const Epilogue& E, int64_t row, int64_t col, float acc) {
  float v = E.alpha * acc;
  if (E.bias) v += E.bias[col];
  if (E.drop.p > 0.f) {
    const float f = dropout_factor(E.drop, static_cast<uint64_t>(row * E.drop_ld + col));
    v = f == 0.f ? 0.f : v * f;  // a dropped element is 0 even when NaN/Inf (as the dropout op)
  }
  if (E.mask) {
    const int64_t b = row * E.mask_ld + col;
    if (!((E.mask[b >> 6] >> (b & 63)) & 1u)) v = 0.f;
  }
  const int64_t i = row * E.ld + col;
  if (E.accumulate) v += (E.row_scale ? E.row_scale[row] : 1.f) * load_elem(E.data, E.type, i);
  store_elem(E.data, E.type, i, v);
}

template <bool ASYNC_A, bool ASYNC_B>
__global__ void __launch_bounds__(kGemmThreads) gemm_bf16_kernel(int64_t M, int64_t N, int64_t K, Operand A, Operand B, Epilogue E) {
  __shared__ __align__(16) uint16_t As[2][kGemmBM * kGemmLd];
  __shared__ __align__(16) uint16_t Bs[2][kGemmBN * kGemmLd];
  using namespace ::lora::cuda;

  const int64_t z = blockIdx.z;
  if (z) {
    if (A.kind <= kActKRow) A.data = static_cast<const char*>(A.data) + z * A.zoff * et_size(A.type);
    else A.w.data = static_cast<const char*>(A.w.data) + z * A.zoff * et_size(A.w.type);
    if (B.kind <= kActKRow) B.data = static_cast<const char*>(B.data) + z * B.zoff * et_size(B.type);
    else B.w.data = static_cast<const char*>(B.w.data) + z * B.zoff * et_size(B.w.type);
    E.data = static_cast<char*>(E.data) + z * E.zoff * et_size(E.type);
  }
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kGemmBM, n0 = static_cast<int64_t>(blockIdx.x) * kGemmBN;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1;

  float acc[2][4][4];
LORA_UNROLL
  for (int i = 0; i < 2; ++i)
LORA_UNROLL
    for (int j = 0; j < 4; ++j)
LORA_UNROLL
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  const int64_t nk = (K + kGemmBK - 1) / kGemmBK;
  RegTile ra, rb;
  // Prologue: tile 0 into buffer 0.
  if (ASYNC_A) load_async(A, m0, M, 0, K, As[0]); else load_regs(A, m0, M, 0, K, ra);
  if (ASYNC_B) load_async(B, n0, N, 0, K, Bs[0]); else load_regs(B, n0, N, 0, K, rb);
  if (ASYNC_A || ASYNC_B) cp_async_commit();
  if (!ASYNC_A) store_regs(A.kind, ra, As[0]);
  if (!ASYNC_B) store_regs(B.kind, rb, Bs[0]);
  if (ASYNC_A || ASYNC_B) cp_async_wait<0>();
  __syncthreads();

  for (int64_t kt = 0; kt < nk; ++kt) {
    const int cur = static_cast<int>(kt & 1);
    const bool more = kt + 1 < nk;
    if (more) {
      const int64_t k1 = (kt + 1) * kGemmBK;
      if (ASYNC_A) load_async(A, m0, M, k1, K, As[cur ^ 1]); else load_regs(A, m0, M, k1, K, ra);
      if (ASYNC_B) load_async(B, n0, N, k1, K, Bs[cur ^ 1]); else load_regs(B, n0, N, k1, K, rb);
      if (ASYNC_A || ASYNC_B) cp_async_commit();
    }
LORA_UNROLL
    for (int kk = 0; kk < kGemmBK; kk += 16) {
      uint32_t af[2][4], bfr[4][2];
LORA_UNROLL
      for (int mi = 0; mi < 2; ++mi) {
        const int r = wm * 32 + mi * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
        const int c = kk + 8 * (lane >> 4);
        ldmatrix_x4(af[mi], &As[cur][r * kGemmLd + c]);
      }
LORA_UNROLL
      for (int p = 0; p < 2; ++p) {
        const int r = wn * 32 + p * 16 + (lane & 7) + 8 * (lane >> 4);
        const int c = kk + 8 * ((lane >> 3) & 1);
        uint32_t t4[4];
        ldmatrix_x4(t4, &Bs[cur][r * kGemmLd + c]);
        bfr[2 * p][0] = t4[0];
        bfr[2 * p][1] = t4[1];
        bfr[2 * p + 1][0] = t4[2];
        bfr[2 * p + 1][1] = t4[3];
      }
LORA_UNROLL
      for (int mi = 0; mi < 2; ++mi)
LORA_UNROLL
        for (int nj = 0; nj < 4; ++nj) mma_m16n8k16_bf16(acc[mi][nj], af[mi], bfr[nj], acc[mi][nj]);
    }
    if (more) {
      if (!ASYNC_A) store_regs(A.kind, ra, As[cur ^ 1]);
      if (!ASYNC_B) store_regs(B.kind, rb, Bs[cur ^ 1]);
      if (ASYNC_A || ASYNC_B) cp_async_wait<0>();
    }
    __syncthreads();
  }

  // Epilogue: c0,c1 = C[g][2t, 2t+1], c2,c3 = C[g+8][2t, 2t+1] of each m16n8 tile.
  const int g = lane >> 2, t = lane & 3;
LORA_UNROLL
  for (int mi = 0; mi < 2; ++mi)
LORA_UNROLL
    for (int nj = 0; nj < 4; ++nj)
LORA_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int64_t row = m0 + wm * 32 + mi * 16 + g + (e >= 2 ? 8 : 0);
        const int64_t col = n0 + wn * 32 + nj * 8 + 2 * t + (e & 1);
        if (row < M && col < N) epilogue_store(E, row, col, acc[mi][nj][e]);
      }
}

// ---- f32 CUDA-core GEMM: the same operands and epilogue, for problems whose operands are all
// f32-exact (f32 activations, f32/f16 weights), where ops.h promises f32 accuracy. 256 threads,
// 64x64 tile, 16-wide k-tiles through two k-major shared buffers (rows padded to 68 floats),
// 4x4 outputs per thread with fmaf, register prefetch of the next k-tile. ----
constexpr int kSimtBK = 16, kSimtLd = 64 + 4, kSimtThreads = 256;

__device__ __forceinline__ void simt_coords(int kind, int idx, int& r, int& c) {
  if (kind == kActRowK || kind == kWeightRowK) { r = idx / kSimtBK; c = idx % kSimtBK; }
  else { r = idx % 64; c = idx / 64; }
}

__device__ __forceinline__ void simt_load(const Operand& o, int64_t row0, int64_t rows, int64_t k0, int64_t K, float (&r)[4]) {
LORA_UNROLL
  for (int i = 0; i < 4; ++i) {
    int rr, cc;
    simt_coords(o.kind, static_cast<int>(threadIdx.x) + i * kSimtThreads, rr, cc);
    const int64_t gr = row0 + rr, gk = k0 + cc;
    r[i] = (gr < rows && gk < K) ? operand_elem(o, gr, gk) : 0.f;
  }
}
__device__ __forceinline__ void simt_store(int kind, const float (&r)[4], float* sm) {
LORA_UNROLL
  for (int i = 0; i < 4; ++i) {
    int rr, cc;
    simt_coords(kind, static_cast<int>(threadIdx.x) + i * kSimtThreads, rr, cc);
    sm[cc * kSimtLd + rr] = r[i];
  }
}

__global__ void __launch_bounds__(kSimtThreads, 2) gemm_f32_kernel(int64_t M, int64_t N, int64_t K, Operand A, Operand B, Epilogue E) {
  __shared__ float As[2][kSimtBK * kSimtLd];
  __shared__ float Bs[2][kSimtBK * kSimtLd];
  const int64_t z = blockIdx.z;
  if (z) {
    if (A.kind <= kActKRow) A.data = static_cast<const char*>(A.data) + z * A.zoff * et_size(A.type);
    else A.w.data = static_cast<const char*>(A.w.data) + z * A.zoff * et_size(A.w.type);
    if (B.kind <= kActKRow) B.data = static_cast<const char*>(B.data) + z * B.zoff * et_size(B.type);
    else B.w.data = static_cast<const char*>(B.w.data) + z * B.zoff * et_size(B.w.type);
    E.data = static_cast<char*>(E.data) + z * E.zoff * et_size(E.type);
  }
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * 64, n0 = static_cast<int64_t>(blockIdx.x) * 64;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  float acc[4][4];
LORA_UNROLL
  for (int i = 0; i < 4; ++i)
LORA_UNROLL
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  float ra[4], rb[4];
  const int64_t nk = (K + kSimtBK - 1) / kSimtBK;
  simt_load(A, m0, M, 0, K, ra);
  simt_load(B, n0, N, 0, K, rb);
  simt_store(A.kind, ra, As[0]);
  simt_store(B.kind, rb, Bs[0]);
  __syncthreads();
  for (int64_t kt = 0; kt < nk; ++kt) {
    const int cur = static_cast<int>(kt & 1);
    const bool more = kt + 1 < nk;
    if (more) {
      simt_load(A, m0, M, (kt + 1) * kSimtBK, K, ra);
      simt_load(B, n0, N, (kt + 1) * kSimtBK, K, rb);
    }
LORA_UNROLL
    for (int kk = 0; kk < kSimtBK; ++kk) {
      float a[4], b[4];
LORA_UNROLL
      for (int i = 0; i < 4; ++i) a[i] = As[cur][kk * kSimtLd + ty * 4 + i];
LORA_UNROLL
      for (int j = 0; j < 4; ++j) b[j] = Bs[cur][kk * kSimtLd + tx * 4 + j];
LORA_UNROLL
      for (int i = 0; i < 4; ++i)
LORA_UNROLL
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) {
      simt_store(A.kind, ra, As[cur ^ 1]);
      simt_store(B.kind, rb, Bs[cur ^ 1]);
    }
    __syncthreads();
  }
LORA_UNROLL
  for (int i = 0; i < 4; ++i)
LORA_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int64_t row = m0 + ty * 4 + i, col = n0 + tx * 4 + j;
      if (row < M && col < N) epilogue_store(E, row, col, acc[i][j]);
    }
}

// f32-exact operand: every element is an f32 without rounding (f32 activations, f32/f16 weights).
inline bool operand_f32_exact(const Operand& o) {
  if (o.kind <= kActKRow) return o.type == ET::F32;
  return o.w.type == ET::F32 || o.w.type == ET::F16;
}

inline bool operand_async_ok(const Operand& o) {
  if (o.drop.p > 0.f) return false;
  if (o.kind == kActRowK) {
    return o.type == ET::BF16 && o.ld % 8 == 0 && aligned(o.data, 16) && (o.zoff * 2) % 16 == 0;
  }
  if (o.kind == kWeightRowK) {
    return o.w.type == ET::BF16 && o.w.cols % 8 == 0 && aligned(o.w.data, 16) && (o.zoff * 2) % 16 == 0;
  }
  return false;
}

// C (=, +=) alpha · op(A) · op(B)ᵀ for Z problems. Validates and launches on `stream`.
inline void gemm(const char* op, int64_t M, int64_t N, int64_t K, const Operand& A, const Operand& B, const Epilogue& E,
                 int Z, Stream stream) {
  require(M >= 0 && N >= 0 && K >= 0 && Z >= 1, op, "negative size");
  if (M == 0 || N == 0) return;
  require((M + kGemmBM - 1) / kGemmBM <= 65535 && Z <= 65535, op, "too many rows for one launch");
  for (const Operand* o : {&A, &B}) {
    if (o->kind <= kActKRow) require(o->data != nullptr || K == 0, op, "null operand");
    else require(o->w.data != nullptr, op, "null weight");
    if (Z > 1 && o->kind >= kWeightRowK) require(o->w.type != ET::INT4 && o->w.type != ET::NF4, op, "stacked problems need unpacked weights");
  }
  require(E.data != nullptr, op, "null output");
  const dim3 grid(static_cast<unsigned>((N + kGemmBN - 1) / kGemmBN), static_cast<unsigned>((M + kGemmBM - 1) / kGemmBM),
                  static_cast<unsigned>(Z));
  if (operand_f32_exact(A) && operand_f32_exact(B)) {
    LORA_LAUNCH(gemm_f32_kernel, grid, dim3(kSimtThreads), 0, stream, M, N, K, A, B, E);
    LORA_CHECK_LAUNCH();
    return;
  }
  const bool aa = operand_async_ok(A), ab = operand_async_ok(B);
  if (aa && ab) LORA_LAUNCH((gemm_bf16_kernel<true, true>), grid, dim3(kGemmThreads), 0, stream, M, N, K, A, B, E);
  else if (aa) LORA_LAUNCH((gemm_bf16_kernel<true, false>), grid, dim3(kGemmThreads), 0, stream, M, N, K, A, B, E);
  else if (ab) LORA_LAUNCH((gemm_bf16_kernel<false, true>), grid, dim3(kGemmThreads), 0, stream, M, N, K, A, B, E);
  else LORA_LAUNCH((gemm_bf16_kernel<false, false>), grid, dim3(kGemmThreads), 0, stream, M, N, K, A, B, E);
  LORA_CHECK_LAUNCH();
}

// ---- helpers to build operands ----
inline Operand act_rowk(const void* data, ET t, int64_t ld) { Operand o; o.kind = kActRowK; o.data = data; o.type = t; o.ld = ld; return o; }
inline Operand act_krow(const void* data, ET t, int64_t ld) { Operand o; o.kind = kActKRow; o.data = data; o.type = t; o.ld = ld; return o; }
inline Operand weight_rowk(const WeightView& w) { Operand o; o.kind = kWeightRowK; o.w = w; return o; }
inline Operand weight_krow(const WeightView& w) { Operand o; o.kind = kWeightKRow; o.w = w; return o; }
inline Epilogue out_mat(void* data, ET t, int64_t ld, bool accumulate, float alpha = 1.f, const float* bias = nullptr) {
  Epilogue e; e.data = data; e.type = t; e.ld = ld; e.accumulate = accumulate; e.alpha = alpha; e.bias = bias; return e;
}

// dbias[n] += Σ_m dy[m, n]: one thread per column (coalesced across the row).
__global__ void __launch_bounds__(256) column_sum_kernel(int64_t M, int64_t N, const void* dy, ET t, int64_t ld, float* out) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * 256 + threadIdx.x;
  if (n >= N) return;
  float s = 0.f;
  for (int64_t m = 0; m < M; ++m) s += load_elem(dy, t, m * ld + n);
  out[n] += s;
}

// ---- the three matmul layouts (ops.h MatmulXWt / MatmulDYW / MatmulDW) ----
// relu_bits (optional, no accumulate): y = relu(x·wᵀ + b) with its keep bits (a second pass over
// the stored output).
// residual (optional, f32 y, no accumulate/relu): y = residual + drop(x·wᵀ + b): the residual is
// copied into y and the product added by the epilogue, after its output dropout.
inline void matmul_xwt(int64_t M, int64_t K, int64_t N, const void* x, ET xt, int64_t ldx, const WeightView& w,
                       const float* bias, void* y, ET yt, int64_t ldy, bool accumulate, Stream s, uint64_t* relu_bits = nullptr,
                       const float* residual = nullptr, int64_t ldr = 0, DropoutArgs drop = DropoutArgs{}) {
  require(w.rows == N && w.cols == K, "matmul_xwt", "weight shape mismatch");
  require(ldx >= K && ldy >= N, "matmul_xwt", "leading dimension smaller than the row");
  require(!(relu_bits && accumulate), "matmul_xwt", "relu bits with accumulate");
  require(!residual || (yt == ET::F32 && !accumulate && !relu_bits && ldr >= N), "matmul_xwt", "residual needs an f32 y, no accumulate, no relu");
  Epilogue e = out_mat(y, yt, ldy, accumulate, 1.f, bias);
  if (residual && M > 0 && N > 0) {
    LORA_LAUNCH(store_rows_kernel, dim3(grid_for(M * N, kEwThreads)), dim3(kEwThreads), 0, s, M, N, residual, ldr, y, ET::F32, ldy);
    LORA_CHECK_LAUNCH();
    e.accumulate = true;
    e.drop = drop;
    e.drop_ld = N;
  }
  gemm("matmul_xwt", M, N, K, act_rowk(x, xt, ldx), weight_rowk(w), e, 1, s);
  if (relu_bits && M > 0 && N > 0) {
    LORA_LAUNCH(relu_bits_kernel, dim3(grid_for(M * N, kEwThreads)), dim3(kEwThreads), 0, s, M, N, y, y, yt, ldy, reinterpret_cast<uint32_t*>(relu_bits));
    LORA_CHECK_LAUNCH();
  }
}
// mask_bits (optional): dx (+)= mask ⊙ (dy·w), bit (m*K + k).
inline void matmul_dyw(int64_t M, int64_t N, int64_t K, const void* dy, ET dyt, int64_t lddy, const WeightView& w,
                       void* dx, ET dxt, int64_t lddx, bool accumulate, Stream s, const uint64_t* mask_bits = nullptr) {
  require(w.rows == N && w.cols == K, "matmul_dyw", "weight shape mismatch");
  require(lddy >= N && lddx >= K, "matmul_dyw", "leading dimension smaller than the row");
  Epilogue e = out_mat(dx, dxt, lddx, accumulate);
  e.mask = mask_bits;
  e.mask_ld = K;
  gemm("matmul_dyw", M, K, N, act_rowk(dy, dyt, lddy), weight_krow(w), e, 1, s);
}
inline void matmul_dw(int64_t M, int64_t N, int64_t K, const void* dy, ET dyt, int64_t lddy, const void* x, ET xt,
                      int64_t ldx, float* dw, int64_t lddw, float* dbias, Stream s) {
  require(lddy >= N && ldx >= K && lddw >= K, "matmul_dw", "leading dimension smaller than the row");
  if (M > 0) gemm("matmul_dw", N, K, M, act_krow(dy, dyt, lddy), act_krow(x, xt, ldx), out_mat(dw, ET::F32, lddw, true), 1, s);
  if (dbias && N > 0 && M > 0) {
    LORA_LAUNCH(column_sum_kernel, dim3(grid_for(N, 256, 1u << 30)), dim3(256), 0, s, M, N, dy, dyt, lddy, dbias);
    LORA_CHECK_LAUNCH();
  }
}

}  // namespace lora::LORA_KNS
