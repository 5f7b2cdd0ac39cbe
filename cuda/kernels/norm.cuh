// LayerNorm forward/backward and embedding forward/backward.
//
// LayerNorm: one 128-thread block per row; the row is read from global memory in coalesced
// strides, statistics are two-pass (mean, then Σ(x - mean)²) with warp shuffles + a shared
// reduction. Backward: the same block computes Σg and Σg·x̂ for its row, then dx; dgamma/dbeta
// accumulate with float atomicAdd per element (order varies between runs, last bits too).
// Embedding: one 128-thread block per token row, coalesced over channels; the backward scatters
// with atomicAdd (rows sharing a token id add up).
#pragma once

#include "common.cuh"

namespace lora::LORA_KNS {

constexpr int kNormThreads = 128;

__global__ void __launch_bounds__(kNormThreads) layernorm_fwd_kernel(int64_t C, float eps, const float* x, const float* gamma,
                                                                     const float* beta, float* y, float* mean_out, float* rstd_out) {
  __shared__ float red[kNormThreads / 32];
  const int64_t m = blockIdx.x;
  const float* xr = x + m * C;
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kNormThreads) s += xr[c];
  const float mean = block_sum<kNormThreads / 32>(s, red) / static_cast<float>(C);
  float v = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kNormThreads) { const float d = xr[c] - mean; v += d * d; }
  const float var = block_sum<kNormThreads / 32>(v, red) / static_cast<float>(C);
  const float rstd = 1.f / sqrtf(var + eps);
  for (int64_t c = threadIdx.x; c < C; c += kNormThreads) {
    float o = (xr[c] - mean) * rstd;
    if (gamma) o *= gamma[c];
    if (beta) o += beta[c];
    y[m * C + c] = o;
  }
  if (threadIdx.x == 0) { mean_out[m] = mean; rstd_out[m] = rstd; }
}

// x̂ from the input ((x - mean)·rstd) or, when y is given, from the output ((y - beta) / gamma).
__global__ void __launch_bounds__(kNormThreads) layernorm_bwd_kernel(int64_t C, const float* dy, const float* x, const float* gamma,
                                                                     const float* mean, const float* rstd, float* dx,
                                                                     float* dgamma, float* dbeta, const float* y, const float* beta) {
  __shared__ float red[kNormThreads / 32];
  const int64_t m = blockIdx.x;
  const float* dyr = dy + m * C;
  const float rs = rstd[m];
  auto xhat = [&](int64_t c) {
    if (y) return (y[m * C + c] - (beta ? beta[c] : 0.f)) / gamma[c];
    return (x[m * C + c] - mean[m]) * rs;
  };
  float sg = 0.f, sgx = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += kNormThreads) {
    const float xh = xhat(c);
    const float g = dyr[c] * (gamma ? gamma[c] : 1.f);
    sg += g;
    sgx += g * xh;
  }
  const float mg = block_sum<kNormThreads / 32>(sg, red) / static_cast<float>(C);
  const float mgx = block_sum<kNormThreads / 32>(sgx, red) / static_cast<float>(C);
  for (int64_t c = threadIdx.x; c < C; c += kNormThreads) {
    const float xh = xhat(c);
    const float g = dyr[c] * (gamma ? gamma[c] : 1.f);
    dx[m * C + c] = rs * (g - mg - xh * mgx);
    if (dgamma) atomicAdd(&dgamma[c], dyr[c] * xh);
    if (dbeta) atomicAdd(&dbeta[c], dyr[c]);
  }
}

inline void layernorm_fwd(int64_t M, int64_t C, float eps, const float* x, const float* gamma, const float* beta, float* y,
                          float* mean, float* rstd, Stream s) {
  require(M >= 0 && C > 0 && M <= 0x7FFFFFFF, "layernorm_fwd", "bad sizes");
  if (M == 0) return;
  LORA_LAUNCH(layernorm_fwd_kernel, dim3(static_cast<unsigned>(M)), dim3(kNormThreads), 0, s, C, eps, x, gamma, beta, y, mean, rstd);
  LORA_CHECK_LAUNCH();
}
// y (optional): x̂ from the output, (y - beta) / gamma (gamma required; x and mean unused).
inline void layernorm_bwd(int64_t M, int64_t C, const float* dy, const float* x, const float* gamma, const float* mean,
                          const float* rstd, float* dx, float* dgamma, float* dbeta, const float* y, const float* beta, Stream s) {
  require(M >= 0 && C > 0 && M <= 0x7FFFFFFF, "layernorm_bwd", "bad sizes");
  require(y ? gamma != nullptr : (x && mean), "layernorm_bwd", "x and mean, or y and gamma, are needed");
  if (M == 0) return;
  LORA_LAUNCH(layernorm_bwd_kernel, dim3(static_cast<unsigned>(M)), dim3(kNormThreads), 0, s, C, dy, x, gamma, mean, rstd, dx,
              dgamma, dbeta, y, beta);
  LORA_CHECK_LAUNCH();
}

// The token table is f32 or bf16 (tt); rows are widened exactly.
__global__ void __launch_bounds__(kNormThreads) embedding_fwd_kernel(int64_t C, const int32_t* ids, const void* table, ET tt,
                                                                     const int32_t* pos, const float* pos_table, int64_t pos_offset,
                                                                     float* out) {
  const int64_t m = blockIdx.x;
  const int64_t row = static_cast<int64_t>(ids[m]) * C;
  const float* p = pos_table ? pos_table + (static_cast<int64_t>(pos[m]) + pos_offset) * C : nullptr;
  for (int64_t c = threadIdx.x; c < C; c += kNormThreads) {
    const float t = load_elem(table, tt, row + c);
    out[m * C + c] = p ? t + p[c] : t;
  }
}
__global__ void __launch_bounds__(kNormThreads) embedding_bwd_kernel(int64_t C, const int32_t* ids, const int32_t* pos, int64_t pos_offset,
                                                                     const float* dout, float* dtable, float* dpos) {
  const int64_t m = blockIdx.x;
  float* t = dtable ? dtable + static_cast<int64_t>(ids[m]) * C : nullptr;
  float* p = dpos ? dpos + (static_cast<int64_t>(pos[m]) + pos_offset) * C : nullptr;
  for (int64_t c = threadIdx.x; c < C; c += kNormThreads) {
    const float g = dout[m * C + c];
    if (t) atomicAdd(&t[c], g);
    if (p) atomicAdd(&p[c], g);
  }
}
inline void embedding_fwd(int64_t M, int64_t C, const int32_t* ids, const void* table, ET tt, const int32_t* pos, const float* pos_table,
                          int64_t pos_offset, float* out, Stream s) {
  require(M >= 0 && C > 0 && M <= 0x7FFFFFFF, "embedding_fwd", "bad sizes");
  require(tt == ET::F32 || tt == ET::BF16, "embedding_fwd", "table must be f32 or bf16");
  require(!pos_table || pos, "embedding_fwd", "pos_table needs positions");
  if (M == 0) return;
  LORA_LAUNCH(embedding_fwd_kernel, dim3(static_cast<unsigned>(M)), dim3(kNormThreads), 0, s, C, ids, table, tt, pos, pos_table, pos_offset, out);
  LORA_CHECK_LAUNCH();
}
inline void embedding_bwd(int64_t M, int64_t C, const int32_t* ids, const int32_t* pos, int64_t pos_offset, const float* dout,
                          float* dtable, float* dpos, Stream s) {
  require(M >= 0 && C > 0 && M <= 0x7FFFFFFF, "embedding_bwd", "bad sizes");
  require(!dpos || pos, "embedding_bwd", "dpos_table needs positions");
  if (M == 0 || (!dtable && !dpos)) return;
  LORA_LAUNCH(embedding_bwd_kernel, dim3(static_cast<unsigned>(M)), dim3(kNormThreads), 0, s, C, ids, pos, pos_offset, dout, dtable, dpos);
  LORA_CHECK_LAUNCH();
}

}  // namespace lora::LORA_KNS
