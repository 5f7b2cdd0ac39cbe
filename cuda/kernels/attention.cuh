// Causal multi-head attention, flash-style (streaming softmax; no [T, Tk] buffer), f32 math; q, k
// and v are f32 or bf16 (qkv_t, widened exactly on load), everything else f32. Query row i sits at
// position q_offset + i and sees keys j <= q_offset + i of Tk key rows; query head h reads KV head
// h / (H / Hkv) (grouped-query attention). A KV cache is appended to by attn_append_kernel first.
//
// Forward: a block of 4 warps handles 4 consecutive query rows of one (batch, head); each warp
// owns one query row. Keys/values stream through shared memory in tiles of 32 rows (K rows padded
// to D + 1 floats so the per-lane dot products do not collide on banks). Per tile, lane j scores
// key j (masked: causal, kv_len, mask), the warp takes the tile max, rescales its running sum and
// its D-wide accumulator (lane owns dims lane, lane + 32, ...; D <= 128) by exp(m_old - m_new),
// and adds p_j · v_j with p_j broadcast by shuffles. It writes O = acc / l and lse = m + log l
// (-inf and O = 0 for a row with no visible key).
// Backward (three launches, all overwrite): delta_i = dO_i·O_i (one warp per row, into a scratch
// buffer; without O, Σ_j P_ij dO_i·v_j over the row's keys); dQ with one warp per query row streaming key tiles (P = exp(S - lse), dS = P ⊙ (dO·vᵀ -
// delta), dq = scale Σ dS k); dK/dV with one warp per key row streaming the query tiles below the
// diagonal (dv = Σ P dO, dk = scale Σ dS q), one KV head's warp looping over the query heads of
// its group. No atomics, so results do not depend on scheduling.
#pragma once

#include "common.cuh"

namespace lora::LORA_KNS {

constexpr int kAttnWarps = 4, kAttnTile = 32, kAttnMaxD = 128;

struct AttnArgs {
  int64_t B, T, H, D;
  int64_t Hkv, Tk, q_offset;  // KV heads, key rows per batch, position of query row 0
  float scale;
  const void *q, *k, *v;  // all of element type qkv_t (f32 or bf16)
  int64_t ldq, ldk, ldv;
  ET qkv_t;
  const int32_t* kv_len;
  const int32_t* mask;
  float* o; int64_t ldo;
  float* lse;
  const float* dout; int64_t lddo;
  float *dq, *dk, *dv;
  int64_t lddq, lddk, lddv;
  float* delta;  // scratch [B*H*T] (backward)
};

__device__ __forceinline__ bool attn_key_visible(const AttnArgs& a, int64_t b, int64_t j) {
  if (a.kv_len && j >= a.kv_len[b]) return false;
  if (a.mask && a.mask[b * a.Tk + j] == 0) return false;
  return true;
}

__global__ void __launch_bounds__(kAttnWarps * 32) attn_fwd_kernel(AttnArgs a) {
  LORA_DYN_SMEM(float, sm);
  const int64_t D = a.D, KL = D + 1;
  float* Ks = sm;                        // [32][D+1]
  float* Vs = Ks + kAttnTile * KL;       // [32][D]
  float* Qs = Vs + kAttnTile * D;        // [warps][D]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, h = blockIdx.y, g = h / (a.H / a.Hkv);
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kAttnWarps;
  const int64_t i = first + warp;
  const bool valid = i < a.T;
  const int64_t last = a.q_offset + (first + kAttnWarps - 1 < a.T ? first + kAttnWarps - 1 : a.T - 1);  // the block's last key
  if (valid)
    for (int64_t d = lane; d < D; d += 32) Qs[warp * D + d] = load_elem(a.q, a.qkv_t, (b * a.T + i) * a.ldq + h * D + d);
  float m = -INFINITY, l = 0.f, acc[kAttnMaxD / 32];
LORA_UNROLL
  for (int c = 0; c < kAttnMaxD / 32; ++c) acc[c] = 0.f;

  for (int64_t j0 = 0; j0 <= last; j0 += kAttnTile) {
    __syncthreads();
    for (int64_t e = threadIdx.x; e < kAttnTile * D; e += kAttnWarps * 32) {
      const int64_t r = e / D, d = e % D, j = j0 + r;
      const bool in = j < a.Tk;
      Ks[r * KL + d] = in ? load_elem(a.k, a.qkv_t, (b * a.Tk + j) * a.ldk + g * D + d) : 0.f;
      Vs[r * D + d] = in ? load_elem(a.v, a.qkv_t, (b * a.Tk + j) * a.ldv + g * D + d) : 0.f;
    }
    __syncthreads();
    if (!valid) continue;
    const int64_t j = j0 + lane;
    float s = -INFINITY;
    if (j <= a.q_offset + i && attn_key_visible(a, b, j)) {
      float dot = 0.f;
      for (int64_t d = 0; d < D; ++d) dot += Qs[warp * D + d] * Ks[lane * KL + d];
      s = dot * a.scale;
    }
    const float mn = fmaxf(m, warp_max(s));
    if (mn == -INFINITY) continue;
    const float p = s == -INFINITY ? 0.f : __expf(s - mn);
    const float alpha = m == -INFINITY ? 0.f : __expf(m - mn);
    l = l * alpha + warp_sum(p);
LORA_UNROLL
    for (int c = 0; c < kAttnMaxD / 32; ++c) acc[c] *= alpha;
    for (int jj = 0; jj < kAttnTile; ++jj) {
      const float pj = __shfl_sync(0xFFFFFFFFu, p, jj);
      if (pj == 0.f) continue;
LORA_UNROLL
      for (int c = 0; c < kAttnMaxD / 32; ++c) {
        const int64_t d = lane + 32 * c;
        if (d < D) acc[c] += pj * Vs[jj * D + d];
      }
    }
    m = mn;
  }
  if (!valid) return;
  float* orow = a.o + (b * a.T + i) * a.ldo + h * D;
  const bool empty = !(l > 0.f);
LORA_UNROLL
  for (int c = 0; c < kAttnMaxD / 32; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) orow[d] = empty ? 0.f : acc[c] / l;
  }
  if (lane == 0) a.lse[(b * a.H + h) * a.T + i] = empty ? -INFINITY : m + logf(l);
}

// delta[b, h, i] = dO_i · O_i (one warp per row).
__global__ void __launch_bounds__(kAttnWarps * 32) attn_delta_kernel(AttnArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kAttnWarps + (threadIdx.x >> 5);  // over B*H*T
  if (row >= a.B * a.H * a.T) return;
  const int64_t i = row % a.T, h = (row / a.T) % a.H, b = row / (a.T * a.H), g = h / (a.H / a.Hkv);
  float s = 0.f;
  if (a.o) {
    for (int64_t d = lane; d < a.D; d += 32)
      s += a.dout[(b * a.T + i) * a.lddo + h * a.D + d] * a.o[(b * a.T + i) * a.ldo + h * a.D + d];
    s = warp_sum(s);
  } else {
    // No kept O: delta_i = Σ_j P_ij (dO_i·v_j), P recomputed from q, k and lse (one warp-reduced
    // pair of dot products per visible key; the scan is warp-uniform).
    const float l = a.lse[row];
    if (l != -INFINITY) {
      for (int64_t j = 0; j <= a.q_offset + i; ++j) {
        if (!attn_key_visible(a, b, j)) continue;
        float qk = 0.f, gv = 0.f;
        for (int64_t d = lane; d < a.D; d += 32) {
          qk += load_elem(a.q, a.qkv_t, (b * a.T + i) * a.ldq + h * a.D + d) * load_elem(a.k, a.qkv_t, (b * a.Tk + j) * a.ldk + g * a.D + d);
          gv += a.dout[(b * a.T + i) * a.lddo + h * a.D + d] * load_elem(a.v, a.qkv_t, (b * a.Tk + j) * a.ldv + g * a.D + d);
        }
        qk = warp_sum(qk);
        gv = warp_sum(gv);
        s += expf(qk * a.scale - l) * gv;
      }
    }
  }
  if (lane == 0) a.delta[row] = s;
}

__global__ void __launch_bounds__(kAttnWarps * 32) attn_bwd_dq_kernel(AttnArgs a) {
  LORA_DYN_SMEM(float, sm);
  const int64_t D = a.D, KL = D + 1;
  float* Ks = sm;                     // [32][D+1]
  float* Vs = Ks + kAttnTile * KL;    // [32][D+1]
  float* Qs = Vs + kAttnTile * KL;    // [warps][D]
  float* Gs = Qs + kAttnWarps * D;    // [warps][D] (dO rows)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, h = blockIdx.y, g = h / (a.H / a.Hkv);
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kAttnWarps;
  const int64_t i = first + warp;
  const bool valid = i < a.T;
  const int64_t last = a.q_offset + (first + kAttnWarps - 1 < a.T ? first + kAttnWarps - 1 : a.T - 1);
  float lse = -INFINITY, delta = 0.f;
  if (valid) {
    for (int64_t d = lane; d < D; d += 32) {
      Qs[warp * D + d] = load_elem(a.q, a.qkv_t, (b * a.T + i) * a.ldq + h * D + d);
      Gs[warp * D + d] = a.dout[(b * a.T + i) * a.lddo + h * D + d];
    }
    lse = a.lse[(b * a.H + h) * a.T + i];
    delta = a.delta[(b * a.H + h) * a.T + i];
  }
  float acc[kAttnMaxD / 32];
LORA_UNROLL
  for (int c = 0; c < kAttnMaxD / 32; ++c) acc[c] = 0.f;
  for (int64_t j0 = 0; j0 <= last; j0 += kAttnTile) {
    __syncthreads();
    for (int64_t e = threadIdx.x; e < kAttnTile * D; e += kAttnWarps * 32) {
      const int64_t r = e / D, d = e % D, j = j0 + r;
      const bool in = j < a.Tk;
      Ks[r * KL + d] = in ? load_elem(a.k, a.qkv_t, (b * a.Tk + j) * a.ldk + g * D + d) : 0.f;
      Vs[r * KL + d] = in ? load_elem(a.v, a.qkv_t, (b * a.Tk + j) * a.ldv + g * D + d) : 0.f;
    }
    __syncthreads();
    if (!valid || lse == -INFINITY) continue;
    const int64_t j = j0 + lane;
    float ds = 0.f;
    if (j <= a.q_offset + i && attn_key_visible(a, b, j)) {
      float dot = 0.f, dp = 0.f;
      for (int64_t d = 0; d < D; ++d) {
        dot += Qs[warp * D + d] * Ks[lane * KL + d];
        dp += Gs[warp * D + d] * Vs[lane * KL + d];
      }
      const float p = __expf(dot * a.scale - lse);
      ds = p * (dp - delta);
    }
    for (int jj = 0; jj < kAttnTile; ++jj) {
      const float dj = __shfl_sync(0xFFFFFFFFu, ds, jj);
      if (dj == 0.f) continue;
LORA_UNROLL
      for (int c = 0; c < kAttnMaxD / 32; ++c) {
        const int64_t d = lane + 32 * c;
        if (d < D) acc[c] += dj * Ks[jj * KL + d];
      }
    }
  }
  if (!valid) return;
LORA_UNROLL
  for (int c = 0; c < kAttnMaxD / 32; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) a.dq[(b * a.T + i) * a.lddq + h * D + d] = acc[c] * a.scale;
  }
}

__global__ void __launch_bounds__(kAttnWarps * 32) attn_bwd_dkdv_kernel(AttnArgs a) {
  LORA_DYN_SMEM(float, sm);
  const int64_t D = a.D, QL = D + 1;
  float* Qs = sm;                     // [32][D+1]
  float* Gs = Qs + kAttnTile * QL;    // [32][D+1] (dO rows)
  float* Ls = Gs + kAttnTile * QL;    // [32] lse
  float* Es = Ls + kAttnTile;         // [32] delta
  float* Kw = Es + kAttnTile;         // [warps][D]
  float* Vw = Kw + kAttnWarps * D;    // [warps][D]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.z, g = blockIdx.y, group = a.H / a.Hkv;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kAttnWarps;
  const int64_t j = first + warp;
  const bool valid = j < a.Tk;
  const bool visible = valid && attn_key_visible(a, b, j);
  if (valid)
    for (int64_t d = lane; d < D; d += 32) {
      Kw[warp * D + d] = load_elem(a.k, a.qkv_t, (b * a.Tk + j) * a.ldk + g * D + d);
      Vw[warp * D + d] = load_elem(a.v, a.qkv_t, (b * a.Tk + j) * a.ldv + g * D + d);
    }
  float gk[kAttnMaxD / 32], gv[kAttnMaxD / 32];
LORA_UNROLL
  for (int c = 0; c < kAttnMaxD / 32; ++c) gk[c] = gv[c] = 0.f;
  // The first query row that sees the block's first key: position q_offset + i >= first.
  const int64_t istart = first > a.q_offset ? first - a.q_offset : 0;
  for (int64_t h = g * group; h < (g + 1) * group; ++h)
    for (int64_t i0 = istart; i0 < a.T; i0 += kAttnTile) {
      __syncthreads();
      for (int64_t e = threadIdx.x; e < kAttnTile * D; e += kAttnWarps * 32) {
        const int64_t r = e / D, d = e % D, i = i0 + r;
        const bool in = i < a.T;
        Qs[r * QL + d] = in ? load_elem(a.q, a.qkv_t, (b * a.T + i) * a.ldq + h * D + d) : 0.f;
        Gs[r * QL + d] = in ? a.dout[(b * a.T + i) * a.lddo + h * D + d] : 0.f;
      }
      for (int64_t r = threadIdx.x; r < kAttnTile; r += kAttnWarps * 32) {
        const int64_t i = i0 + r;
        Ls[r] = i < a.T ? a.lse[(b * a.H + h) * a.T + i] : -INFINITY;
        Es[r] = i < a.T ? a.delta[(b * a.H + h) * a.T + i] : 0.f;
      }
      __syncthreads();
      if (!visible) continue;
      const int64_t i = i0 + lane;
      float p = 0.f, ds = 0.f;
      if (i < a.T && a.q_offset + i >= j) {
        float dot = 0.f, dp = 0.f;
        for (int64_t d = 0; d < D; ++d) {
          dot += Qs[lane * QL + d] * Kw[warp * D + d];
          dp += Gs[lane * QL + d] * Vw[warp * D + d];
        }
        p = __expf(dot * a.scale - Ls[lane]);
        ds = p * (dp - Es[lane]);
      }
      for (int ii = 0; ii < kAttnTile; ++ii) {
        const float pi = __shfl_sync(0xFFFFFFFFu, p, ii);
        const float di = __shfl_sync(0xFFFFFFFFu, ds, ii);
        if (pi == 0.f && di == 0.f) continue;
LORA_UNROLL
        for (int c = 0; c < kAttnMaxD / 32; ++c) {
          const int64_t d = lane + 32 * c;
          if (d < D) {
            gv[c] += pi * Gs[ii * QL + d];
            gk[c] += di * Qs[ii * QL + d];
          }
        }
      }
    }
  if (!valid) return;
LORA_UNROLL
  for (int c = 0; c < kAttnMaxD / 32; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < D) {
      a.dk[(b * a.Tk + j) * a.lddk + g * D + d] = gk[c] * a.scale;
      a.dv[(b * a.Tk + j) * a.lddv + g * D + d] = gv[c];
    }
  }
}

// A KV cache's new rows: cache rows [q_offset, q_offset + T) of each batch = the T rows of k / v
// (element type t, copied exactly). Caches are [B, Tk, Ckv] contiguous.
__global__ void __launch_bounds__(256) attn_append_kernel(AttnArgs a, void* k_cache, void* v_cache) {
  const int64_t ckv = a.Hkv * a.D, n = a.B * a.T * ckv;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = e % ckv, r = e / ckv, b = r / a.T, i = r % a.T;
    const int64_t dst = (b * a.Tk + a.q_offset + i) * ckv + c;
    store_elem(k_cache, a.qkv_t, dst, load_elem(a.k, a.qkv_t, r * a.ldk + c));
    store_elem(v_cache, a.qkv_t, dst, load_elem(a.v, a.qkv_t, r * a.ldv + c));
  }
}

inline void attn_check(const AttnArgs& a, const char* op) {
  require(a.B >= 0 && a.T >= 0 && a.H >= 0 && a.D >= 1, op, "bad sizes");
  require(a.Hkv >= 1 && a.H % a.Hkv == 0 && a.Tk >= a.T && a.q_offset >= 0 && a.q_offset + a.T <= a.Tk, op, "bad KV heads, key rows or query offset");
  require(a.D <= kAttnMaxD, op, "head dim " + std::to_string(a.D) + " > " + std::to_string(kAttnMaxD) + " is not supported");
  require(a.Tk <= 0x7FFFFFFFLL * kAttnWarps && a.H <= 65535 && a.B <= 65535, op, "too many rows/heads/batches for one launch");
}
// One warp per row of `rows` (query rows, or key rows for dK/dV) for each of `heads` heads.
inline dim3 attn_grid(const AttnArgs& a, int64_t rows, int64_t heads) {
  return dim3(static_cast<unsigned>((rows + kAttnWarps - 1) / kAttnWarps), static_cast<unsigned>(heads), static_cast<unsigned>(a.B));
}
template <class Kernel>
inline void set_smem_limit(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) LORA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// With k_cache/v_cache: a.k/a.v are the T new rows; they are appended to the caches, which are then
// the keys and values.
inline void attn_fwd(const AttnArgs& call, Stream s, void* k_cache = nullptr, void* v_cache = nullptr) {
  attn_check(call, "attn_fwd");
  if (call.B * call.H * call.T == 0) return;
  AttnArgs a = call;
  if (k_cache) {
    LORA_LAUNCH(attn_append_kernel, dim3(grid_for(a.B * a.T * a.Hkv * a.D, 256)), dim3(256), 0, s, a, k_cache, v_cache);
    LORA_CHECK_LAUNCH();
    a.k = k_cache, a.v = v_cache, a.ldk = a.ldv = a.Hkv * a.D;
  }
  const size_t smem = sizeof(float) * static_cast<size_t>(kAttnTile * (a.D + 1) + kAttnTile * a.D + kAttnWarps * a.D);
  set_smem_limit(attn_fwd_kernel, smem);
  LORA_LAUNCH(attn_fwd_kernel, attn_grid(a, a.T, a.H), dim3(kAttnWarps * 32), smem, s, a);
  LORA_CHECK_LAUNCH();
}
// a.delta must point at B*H*T floats of scratch device memory.
inline void attn_bwd(const AttnArgs& a, Stream s) {
  attn_check(a, "attn_bwd");
  require(a.delta != nullptr, "attn_bwd", "missing scratch");
  const int64_t rows = a.B * a.H * a.T;
  if (a.B * a.Hkv * a.Tk == 0) return;
  if (rows > 0) {
    LORA_LAUNCH(attn_delta_kernel, dim3(grid_for(rows, kAttnWarps, 1u << 30)), dim3(kAttnWarps * 32), 0, s, a);
    LORA_CHECK_LAUNCH();
    const size_t smem_dq = sizeof(float) * static_cast<size_t>(2 * kAttnTile * (a.D + 1) + 2 * kAttnWarps * a.D);
    set_smem_limit(attn_bwd_dq_kernel, smem_dq);
    LORA_LAUNCH(attn_bwd_dq_kernel, attn_grid(a, a.T, a.H), dim3(kAttnWarps * 32), smem_dq, s, a);
    LORA_CHECK_LAUNCH();
  }
  const size_t smem_kv = sizeof(float) * static_cast<size_t>(2 * kAttnTile * (a.D + 1) + 2 * kAttnTile + 2 * kAttnWarps * a.D);
  set_smem_limit(attn_bwd_dkdv_kernel, smem_kv);
  LORA_LAUNCH(attn_bwd_dkdv_kernel, attn_grid(a, a.Tk, a.Hkv), dim3(kAttnWarps * 32), smem_kv, s, a);
  LORA_CHECK_LAUNCH();
}

}  // namespace lora::LORA_KNS
