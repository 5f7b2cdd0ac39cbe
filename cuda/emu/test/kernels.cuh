// Test kernels and their launchers. Compiled by g++ against the emulator (test_main.cc) and by
// nvcc for sm_80/89/90 (nvcc_check.cu, compile only). Some kernels carry planted bugs on purpose;
// their names say so.
#pragma once

#include "../../common/cuda_compat.cuh"
#include "../../common/mma.cuh"

namespace emu_test {
using namespace lora::cuda;

// ---------------------------------------------------------------------------
// Plain kernels
// ---------------------------------------------------------------------------
__global__ void vec_add(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) c[i] = a[i] + __ldg(&b[i]);
}

// PLANTED BUG: writes the ragged tail out of bounds (no `i < n` guard on the store).
__global__ void vec_add_oob(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  c[i] = (i < n) ? a[i] + b[i] : 0.0f;
}

// Per-block sums (exact for integer-valued data) plus a grid total through a float atomic.
template <int BLOCK>
__global__ void block_sum(const float* __restrict__ in, float* __restrict__ partial, float* total, int n) {
  __shared__ float s[BLOCK];
  float v = 0.0f;
  for (int i = static_cast<int>(blockIdx.x) * BLOCK + static_cast<int>(threadIdx.x); i < n;
       i += BLOCK * static_cast<int>(gridDim.x))
    v += in[i];
  s[threadIdx.x] = v;
  __syncthreads();
  for (int stride = BLOCK / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride) s[threadIdx.x] += s[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = s[0];
    atomicAdd(total, s[0]);
  }
}

// Warp collectives: 10 outputs per thread.
__global__ void warp_ops(const int* __restrict__ in, int* __restrict__ out) {
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31;
  const int v = in[blockIdx.x * blockDim.x + tid];
  int x = v;
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xFFFFFFFFu, x, o);
  int d = v;
  for (int o = 16; o > 0; o >>= 1) d += __shfl_down_sync(0xFFFFFFFFu, d, o);
  int scan = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(0xFFFFFFFFu, scan, o);
    if (lane >= o) scan += t;
  }
  const int bc = __shfl_sync(0xFFFFFFFFu, v, 3, 16);
  const unsigned bal = __ballot_sync(0xFFFFFFFFu, (v & 1) != 0);
  const int any = __any_sync(0xFFFFFFFFu, v > 1000) ? 1 : 0;
  const int all = __all_sync(0xFFFFFFFFu, v >= 0) ? 1 : 0;
  int half = 0;
  if (lane < 16) {
    half = v;
    for (int o = 8; o > 0; o >>= 1) half += __shfl_xor_sync(0x0000FFFFu, half, o);
  }
  __syncwarp();
  const float f = __shfl_xor_sync(0xFFFFFFFFu, static_cast<float>(v) * 0.5f, 1);
  const int cnt = __syncthreads_count(v % 3 == 0);
  int* o = out + (blockIdx.x * blockDim.x + tid) * 10;
  o[0] = x;
  o[1] = d;
  o[2] = scan;
  o[3] = bc;
  o[4] = static_cast<int>(bal);
  o[5] = any;
  o[6] = all;
  o[7] = half;
  o[8] = static_cast<int>(f * 2.0f);
  o[9] = cnt;
}

// 3-D geometry: every thread records its coordinates and its lane's ballot of (y odd).
__global__ void geometry(unsigned* out) {
  const unsigned bl = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tl = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned nt = blockDim.x * blockDim.y * blockDim.z;
  const unsigned bal = __ballot_sync(0xFFFFFFFFu, threadIdx.y & 1u);
  unsigned* o = out + (bl * nt + tl) * 7;
  o[0] = threadIdx.x;
  o[1] = threadIdx.y;
  o[2] = threadIdx.z;
  o[3] = blockIdx.x;
  o[4] = blockIdx.y;
  o[5] = blockIdx.z;
  o[6] = bal;
}

// Atomics across blocks (which run on different worker threads).
__global__ void atomics(const int* __restrict__ in, int n, int* bins, float* fsum, int* imax, unsigned* cas_count) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  const int v = in[i];
  atomicAdd(&bins[v & 15], 1);
  atomicAdd(fsum, static_cast<float>(v & 7));
  atomicMax(imax, v);
  unsigned old = *cas_count, assumed;
  do {
    assumed = old;
    old = atomicCAS(cas_count, assumed, assumed + 1u);
  } while (old != assumed);
}

// Reads dynamic shared memory that nobody wrote: must see the 0xFF poison (NaN).
__global__ void read_unwritten_smem(float* out, unsigned* raw) {
  LORA_DYN_SMEM(float, s);
  out[threadIdx.x] = s[threadIdx.x];
  raw[threadIdx.x] = __float_as_uint(s[threadIdx.x]);
}

// Neighbour exchange through shared memory. With with_barrier == 0 this is the PLANTED missing-
// barrier bug: it happens to work when threads run in forward order, and fails otherwise.
__global__ void shift_right(const float* __restrict__ in, float* __restrict__ out, int with_barrier) {
  LORA_DYN_SMEM(float, s);
  const int t = static_cast<int>(threadIdx.x);
  s[t] = in[t];
  if (with_barrier) __syncthreads();
  out[t] = (t > 0) ? s[t - 1] : 0.0f;
}

// PLANTED BUG: threads of one block wait at two different barriers.
constexpr int kDivergentLineA = __LINE__ + 5;
constexpr int kDivergentLineB = __LINE__ + 6;
__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 16) {
    out[threadIdx.x] = 1.0f;
    __syncthreads();
  } else {
    __syncthreads();
    out[threadIdx.x] = 2.0f;
  }
}

// PLANTED BUG: some threads exit before a barrier the others wait at.
constexpr int kExitBarrierLine = __LINE__ + 4;
__global__ void exit_before_barrier(float* out, int n) {
  if (static_cast<int>(threadIdx.x) >= n) return;
  out[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] += 1.0f;
}

// PLANTED BUG: a shuffle whose mask leaves out the calling lanes 16..31.
constexpr int kBadMaskLine = __LINE__ + 3;
__global__ void bad_mask(int* out) {
  const int v = static_cast<int>(threadIdx.x);
  out[threadIdx.x] = __shfl_sync(0x0000FFFFu, v, 0);
}

// PLANTED BUG: a full-warp mask in a block of 20 threads names lanes that do not exist.
__global__ void mask_names_missing_lanes(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xFFFFFFFFu, static_cast<int>(threadIdx.x), 1);
}

// PLANTED BUG: half the warp shuffles with a full mask while the other half waits at a barrier.
constexpr int kDeadlockShflLine = __LINE__ + 5;
constexpr int kDeadlockBarLine = __LINE__ + 6;
__global__ void deadlock(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x < 16) {
    v = __shfl_sync(0xFFFFFFFFu, v, 0);
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = v;
}

constexpr int kTrapLine = __LINE__ + 2;
__global__ void trapper(int* out) {
  if (threadIdx.x == 5) __trap();
  out[threadIdx.x] = 1;
}

__global__ void barrier_loop(int iters, int* out) {
  int acc = 0;
  for (int i = 0; i < iters; ++i) {
    acc += i;
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

__global__ void shuffle_loop(int iters, int* out) {
  int v = static_cast<int>(threadIdx.x);
  for (int i = 0; i < iters; ++i) v += __shfl_xor_sync(0xFFFFFFFFu, v, 1);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// ---------------------------------------------------------------------------
// Tensor cores
// ---------------------------------------------------------------------------
// One warp: fragments built straight from global memory with the PTX ISA formulas, one mma.
// A is 16x16 row-major bf16, B is 16x8 (K x N) row-major bf16, C/D 16x8 row-major f32.
__global__ void mma_fragments(const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B,
                              const float* __restrict__ C, float* __restrict__ D) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int g = lane >> 2, t = lane & 3;
  uint32_t a[4], b[2];
  float c[4], d[4];
  for (int r = 0; r < 4; ++r) {
    const int row = g + ((r & 1) ? 8 : 0), col = 2 * t + ((r & 2) ? 8 : 0);
    a[r] = pack_bf16x2(__bfloat162float(A[row * 16 + col]), __bfloat162float(A[row * 16 + col + 1]));
  }
  for (int r = 0; r < 2; ++r) {
    const int k = 2 * t + (r ? 8 : 0);
    b[r] = pack_bf16x2(__bfloat162float(B[k * 8 + g]), __bfloat162float(B[(k + 1) * 8 + g]));
  }
  c[0] = C[g * 8 + 2 * t];
  c[1] = C[g * 8 + 2 * t + 1];
  c[2] = C[(g + 8) * 8 + 2 * t];
  c[3] = C[(g + 8) * 8 + 2 * t + 1];
  mma_m16n8k16_bf16(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// One warp: a 32x16 tile of 16-bit values in shared memory, loaded with every ldmatrix form.
// out gets, per lane, 1+2+4 registers (non-trans) then 1+2+4 (trans): 14 words.
__global__ void ldmatrix_dump(const uint16_t* __restrict__ src, uint32_t* __restrict__ out) {
  __shared__ __align__(16) uint16_t tile[32 * 16];
  const int lane = static_cast<int>(threadIdx.x) & 31;
  for (int i = lane; i < 32 * 16; i += 32) tile[i] = src[i];
  __syncwarp();
  // matrix m = lane / 8 is the 8x8 block at rows 8*m .. 8*m+7, columns 0..7 of the tile;
  // row j of it is supplied by lane 8*m + j.
  const uint16_t* row = &tile[lane * 16];
  uint32_t r1[1], r2[2], r4[4], t1[1], t2[2], t4[4];
  ldmatrix_x1(r1, row);
  ldmatrix_x2(r2, row);
  ldmatrix_x4(r4, row);
  ldmatrix_x1_trans(t1, row);
  ldmatrix_x2_trans(t2, row);
  ldmatrix_x4_trans(t4, row);
  uint32_t* o = out + lane * 14;
  o[0] = r1[0];
  o[1] = r2[0];
  o[2] = r2[1];
  for (int i = 0; i < 4; ++i) o[3 + i] = r4[i];
  o[7] = t1[0];
  o[8] = t2[0];
  o[9] = t2[1];
  for (int i = 0; i < 4; ++i) o[10 + i] = t4[i];
}

// Tiled bf16 GEMM on tensor cores: C[M x N] (f32) = A[M x K] * B, A row-major; B either as
// W[N x K] row-major (B_IS_NK, ldmatrix non-trans) or as B[K x N] row-major (ldmatrix .trans).
// Block tile 32x32x16, 4 warps (2x2), each warp 16x16 = two m16n8k16 tiles; a two-stage
// cp.async pipeline with zero-fill for ragged M/N/K. Requires K % 8 == 0 (and N % 8 == 0 for KN).
template <bool B_IS_NK>
__global__ void __launch_bounds__(128) gemm_bf16(const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B,
                                                 float* __restrict__ C, int M, int N, int K) {
  constexpr int BM = 32, BN = 32, BK = 16, PAD = 8;
  __shared__ __align__(16) __nv_bfloat16 As[2][BM][BK + PAD];
  __shared__ __align__(16) __nv_bfloat16 Bs[2][B_IS_NK ? BN : BK][(B_IS_NK ? BK : BN) + PAD];
  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid >> 5, lane = tid & 31;
  const int wm = warp >> 1, wn = warp & 1;
  const int m0 = static_cast<int>(blockIdx.y) * BM, n0 = static_cast<int>(blockIdx.x) * BN;
  const int ktiles = (K + BK - 1) / BK;

  auto load_tile = [&](int kt, int buf) {
    const int k0 = kt * BK;
    if (tid < 64) {  // A: 32 rows x 2 chunks of 8 elements
      const int r = tid >> 1, ck = (tid & 1) * 8;
      const int gm = m0 + r, gk = k0 + ck;
      const int bytes = (gm < M && gk < K) ? min(16, (K - gk) * 2) : 0;
      const __nv_bfloat16* src = bytes ? &A[static_cast<size_t>(gm) * K + gk] : A;
      cp_async_16_zfill(&As[buf][r][ck], src, bytes);
    } else {
      const int u = tid - 64;
      if constexpr (B_IS_NK) {  // 32 n-rows x 2 chunks along k
        const int r = u >> 1, ck = (u & 1) * 8;
        const int gn = n0 + r, gk = k0 + ck;
        const int bytes = (gn < N && gk < K) ? min(16, (K - gk) * 2) : 0;
        const __nv_bfloat16* src = bytes ? &B[static_cast<size_t>(gn) * K + gk] : B;
        cp_async_16_zfill(&Bs[buf][r][ck], src, bytes);
      } else {  // 16 k-rows x 4 chunks along n
        const int r = u >> 2, cn = (u & 3) * 8;
        const int gk = k0 + r, gn = n0 + cn;
        const int bytes = (gk < K && gn < N) ? min(16, (N - gn) * 2) : 0;
        const __nv_bfloat16* src = bytes ? &B[static_cast<size_t>(gk) * N + gn] : B;
        cp_async_16_zfill(&Bs[buf][r][cn], src, bytes);
      }
    }
  };

  float acc[2][4];
  for (int j = 0; j < 2; ++j)
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;

  load_tile(0, 0);
  cp_async_commit();
  for (int kt = 0; kt < ktiles; ++kt) {
    const int buf = kt & 1;
    if (kt + 1 < ktiles) load_tile(kt + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    uint32_t a[4];
    {
      const int mat = lane >> 3, r = lane & 7;
      ldmatrix_x4(a, &As[buf][wm * 16 + r + (mat & 1) * 8][(mat >> 1) * 8]);
    }
    uint32_t b[2][2];
    if constexpr (B_IS_NK) {
      const int mat = lane >> 3, r = lane & 7;
      uint32_t q[4];
      ldmatrix_x4(q, &Bs[buf][wn * 16 + (mat >> 1) * 8 + r][(mat & 1) * 8]);
      b[0][0] = q[0];
      b[0][1] = q[1];
      b[1][0] = q[2];
      b[1][1] = q[3];
    } else {
      for (int j = 0; j < 2; ++j) {
        uint32_t q[2];
        ldmatrix_x2_trans(q, &Bs[buf][lane & 15][wn * 16 + j * 8]);
        b[j][0] = q[0];
        b[j][1] = q[1];
      }
    }
    for (int j = 0; j < 2; ++j) mma_m16n8k16_bf16(acc[j], a, b[j], acc[j]);
    __syncthreads();
  }

  const int g = lane >> 2, t = lane & 3;
  for (int j = 0; j < 2; ++j) {
    const int col = n0 + wn * 16 + j * 8 + 2 * t;
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + wm * 16 + g + h * 8;
      if (row >= M) continue;
      if (col < N) C[static_cast<size_t>(row) * N + col] = acc[j][2 * h];
      if (col + 1 < N) C[static_cast<size_t>(row) * N + col + 1] = acc[j][2 * h + 1];
    }
  }
}

// Multi-stage cp.async copy through dynamic shared memory. Each thread publishes the chunk of
// its right-hand neighbour, so the barrier after the wait is required. LAX_WAIT is the PLANTED
// BUG of waiting for one group too few.
template <int STAGES, bool LAX_WAIT>
__global__ void cp_async_copy(const float4* __restrict__ src, float4* __restrict__ dst, int nchunks) {
  LORA_DYN_SMEM(float4, stage);
  const int bd = static_cast<int>(blockDim.x), tid = static_cast<int>(threadIdx.x);
  const int tiles = (nchunks + bd - 1) / bd;
  auto issue = [&](int tile) {
    const int idx = tile * bd + tid;
    const int slot = tile % STAGES;
    const bool ok = tile < tiles && idx < nchunks;
    cp_async_16_zfill(&stage[slot * bd + tid], ok ? &src[idx] : src, ok ? 16 : 0);
  };
  for (int s = 0; s < STAGES - 1; ++s) {
    issue(s);
    cp_async_commit();
  }
  for (int t = 0; t < tiles; ++t) {
    issue(t + STAGES - 1);
    cp_async_commit();
    if (LAX_WAIT)
      cp_async_wait<STAGES>();
    else
      cp_async_wait<STAGES - 1>();
    __syncthreads();
    const int nb = (tid + 1) % bd;
    const int idx = t * bd + nb;
    if (idx < nchunks) dst[idx] = stage[(t % STAGES) * bd + nb];
    __syncthreads();
  }
  cp_async_wait_all();
}

// ---------------------------------------------------------------------------
// Launchers (plain host functions; the same code under nvcc and the emulator)
// ---------------------------------------------------------------------------
inline void launch_vec_add(const float* a, const float* b, float* c, int n, Stream s) {
  LORA_LAUNCH(vec_add, dim3((n + 127) / 128), dim3(128), 0, s, a, b, c, n);
  LORA_CHECK_LAUNCH();
}
inline void launch_vec_add_oob(const float* a, const float* b, float* c, int n, Stream s) {
  LORA_LAUNCH(vec_add_oob, dim3((n + 127) / 128), dim3(128), 0, s, a, b, c, n);
  LORA_CHECK_LAUNCH();
}
inline void launch_block_sum(const float* in, float* partial, float* total, int n, int blocks, Stream s) {
  LORA_LAUNCH((block_sum<256>), dim3(blocks), dim3(256), 0, s, in, partial, total, n);
  LORA_CHECK_LAUNCH();
}
inline void launch_warp_ops(const int* in, int* out, int blocks, int threads, Stream s) {
  LORA_LAUNCH(warp_ops, dim3(blocks), dim3(threads), 0, s, in, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_geometry(unsigned* out, dim3 grid, dim3 block, Stream s) {
  LORA_LAUNCH(geometry, grid, block, 0, s, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_atomics(const int* in, int n, int* bins, float* fsum, int* imax, unsigned* cas, Stream s) {
  LORA_LAUNCH(atomics, dim3((n + 255) / 256), dim3(256), 0, s, in, n, bins, fsum, imax, cas);
  LORA_CHECK_LAUNCH();
}
inline void launch_read_unwritten_smem(float* out, unsigned* raw, int threads, Stream s) {
  LORA_LAUNCH(read_unwritten_smem, dim3(1), dim3(threads), threads * sizeof(float), s, out, raw);
  LORA_CHECK_LAUNCH();
}
inline void launch_shift_right(const float* in, float* out, int threads, int with_barrier, Stream s) {
  LORA_LAUNCH(shift_right, dim3(1), dim3(threads), threads * sizeof(float), s, in, out, with_barrier);
  LORA_CHECK_LAUNCH();
}
inline void launch_divergent_barrier(float* out, Stream s) {
  LORA_LAUNCH(divergent_barrier, dim3(1), dim3(32), 0, s, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_exit_before_barrier(float* out, int n, Stream s) {
  LORA_LAUNCH(exit_before_barrier, dim3(1), dim3(64), 0, s, out, n);
  LORA_CHECK_LAUNCH();
}
inline void launch_bad_mask(int* out, Stream s) {
  LORA_LAUNCH(bad_mask, dim3(1), dim3(32), 0, s, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_mask_names_missing_lanes(int* out, Stream s) {
  LORA_LAUNCH(mask_names_missing_lanes, dim3(1), dim3(20), 0, s, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_deadlock(int* out, Stream s) {
  LORA_LAUNCH(deadlock, dim3(1), dim3(32), 0, s, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_trapper(int* out, Stream s) {
  LORA_LAUNCH(trapper, dim3(1), dim3(32), 0, s, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_barrier_loop(int iters, int* out, int blocks, int threads, Stream s) {
  LORA_LAUNCH(barrier_loop, dim3(blocks), dim3(threads), 0, s, iters, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_shuffle_loop(int iters, int* out, int blocks, int threads, Stream s) {
  LORA_LAUNCH(shuffle_loop, dim3(blocks), dim3(threads), 0, s, iters, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_mma_fragments(const __nv_bfloat16* A, const __nv_bfloat16* B, const float* C, float* D, Stream s) {
  LORA_LAUNCH(mma_fragments, dim3(1), dim3(32), 0, s, A, B, C, D);
  LORA_CHECK_LAUNCH();
}
inline void launch_ldmatrix_dump(const uint16_t* src, uint32_t* out, Stream s) {
  LORA_LAUNCH(ldmatrix_dump, dim3(1), dim3(32), 0, s, src, out);
  LORA_CHECK_LAUNCH();
}
inline void launch_gemm_bf16(bool b_is_nk, const __nv_bfloat16* A, const __nv_bfloat16* B, float* C, int M, int N,
                             int K, Stream s) {
  const dim3 grid((N + 31) / 32, (M + 31) / 32);
  if (b_is_nk) {
    LORA_LAUNCH((gemm_bf16<true>), grid, dim3(128), 0, s, A, B, C, M, N, K);
  } else {
    LORA_LAUNCH((gemm_bf16<false>), grid, dim3(128), 0, s, A, B, C, M, N, K);
  }
  LORA_CHECK_LAUNCH();
}
inline void launch_cp_async_copy(bool lax_wait, const float4* src, float4* dst, int nchunks, Stream s) {
  constexpr int kStages = 3, kThreads = 64;
  const size_t smem = kStages * kThreads * sizeof(float4);
  if (lax_wait) {
    LORA_LAUNCH((cp_async_copy<kStages, true>), dim3(1), dim3(kThreads), smem, s, src, dst, nchunks);
  } else {
    LORA_LAUNCH((cp_async_copy<kStages, false>), dim3(1), dim3(kThreads), smem, s, src, dst, nchunks);
  }
  LORA_CHECK_LAUNCH();
}

}  // namespace emu_test
