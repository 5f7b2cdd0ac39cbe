// Fused linear + cross-entropy over vocabulary chunks (ops.h CrossEntropy). Only [M, chunk] logits
// exist at a time (scratch), plus O(M) row statistics.
//   pass 1, per chunk: logits_c = H·W_cᵀ (tensor-core GEMM, W dequantized in the GEMM), then one
//     warp per row updates its online max / Σexp (rescaled when the max grows), picks the target's
//     logit and copies the chunk into the optional full `logits` output;
//   finalize (one block): lse, per-row loss, Σloss (f64) and the count of counted rows;
//   pass 2 (only when dh is wanted), per chunk: the logits are recomputed, turned in place into
//     G = (softmax - onehot)·grad_scale/count (0 for ignored rows), and dH (=, then +=) G·W_c.
// The gradient is thus a second streamed pass (logits recomputed) rather than an online rescaled
// accumulator; with one chunk covering V the logits are reused and nothing is recomputed.
#pragma once

#include "gemm.cuh"

namespace lora::LORA_KNS {

constexpr int kCeWarps = 4;

__global__ void __launch_bounds__(kCeWarps * 32) ce_stats_kernel(int64_t M, int64_t cw, int64_t v0, int64_t V, const float* lc, int64_t ldc,
                                                                const int32_t* targets, float* rmax, float* rsum, float* rtgt,
                                                                float* logits) {
  const int lane = threadIdx.x & 31;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * kCeWarps + (threadIdx.x >> 5);
  if (m >= M) return;
  const float* row = lc + m * ldc;
  float mx = -INFINITY;
  for (int64_t j = lane; j < cw; j += 32) {
    const float v = row[j];
    mx = fmaxf(mx, v);
    if (logits) logits[m * V + v0 + j] = v;
  }
  mx = warp_max(mx);
  const float old = v0 == 0 ? -INFINITY : rmax[m];
  const float mn = fmaxf(old, mx);
  float s = 0.f;
  if (mn != -INFINITY)
    for (int64_t j = lane; j < cw; j += 32) s += __expf(row[j] - mn);
  s = warp_sum(s);
  if (lane == 0) {
    const float prev = v0 == 0 ? 0.f : rsum[m];
    rsum[m] = (old == -INFINITY ? 0.f : prev * __expf(old - mn)) + s;
    rmax[m] = mn;
    const int32_t t = targets[m];
    if (t >= v0 && t < v0 + cw) rtgt[m] = row[t - v0];
  }
}

// One block: lse (into rsum), per-row loss, mean loss and count.
__global__ void __launch_bounds__(256) ce_finalize_kernel(int64_t M, const int32_t* targets, int32_t ignore, const float* rmax, float* rsum,
                                                          const float* rtgt, float* loss_rows, double* loss, int64_t* count) {
  __shared__ double tot[256];
  __shared__ long long cnt[256];
  double t = 0.0;
  long long c = 0;
  for (int64_t m = threadIdx.x; m < M; m += 256) {
    const float lse = rmax[m] + logf(rsum[m]);
    rsum[m] = lse;
    const bool counted = targets[m] != ignore;
    const float lm = counted ? lse - rtgt[m] : 0.f;
    if (loss_rows) loss_rows[m] = lm;
    t += lm;
    c += counted ? 1 : 0;
  }
  tot[threadIdx.x] = t;
  cnt[threadIdx.x] = c;
  __syncthreads();
  for (int st = 128; st > 0; st >>= 1) {
    if (static_cast<int>(threadIdx.x) < st) {
      tot[threadIdx.x] += tot[threadIdx.x + st];
      cnt[threadIdx.x] += cnt[threadIdx.x + st];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    *count = cnt[0];
    *loss = cnt[0] ? tot[0] / static_cast<double>(cnt[0]) : 0.0;
  }
}

__global__ void __launch_bounds__(256) ce_grad_kernel(int64_t M, int64_t cw, int64_t v0, float* lc, int64_t ldc, const int32_t* targets,
                                                      int32_t ignore, const float* lse, float grad_scale, const int64_t* count) {
  const int64_t n = M * cw;
  const float g = *count > 0 ? grad_scale / static_cast<float>(*count) : 0.f;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = i / cw, j = i % cw;
    const int32_t t = targets[m];
    float v = 0.f;
    if (t != ignore) v = (__expf(lc[m * ldc + j] - lse[m]) - (t == v0 + j ? 1.f : 0.f)) * g;
    lc[m * ldc + j] = v;
  }
}

// loss (double) and count (int64) are device pointers; dh / logits / loss_rows optional.
inline void cross_entropy(int64_t M, int64_t C, int64_t V, int64_t chunk, int32_t ignore, float grad_scale, const void* h, ET ht,
                          int64_t ldh, const WeightView& w, const int32_t* targets, float* dh, float* logits, float* loss_rows,
                          double* loss, int64_t* count, Stream st) {
  require(M >= 0 && C >= 1 && V >= 1, "cross_entropy", "bad sizes");
  require(w.rows == V && w.cols == C, "cross_entropy", "weight must be [V, C]");
  require(ldh >= C, "cross_entropy", "leading dimension smaller than the row");
  if (chunk <= 0 || chunk > V) chunk = V;
  if (M == 0) {
    LORA_CUDA_CHECK(cudaMemsetAsync(loss, 0, sizeof(double), st));
    LORA_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(int64_t), st));
    return;
  }
  DeviceBuffer lbuf(sizeof(float) * static_cast<size_t>(M * chunk));
  DeviceBuffer stats(sizeof(float) * static_cast<size_t>(3 * M));
  float* lc = lbuf.as<float>();
  float* rmax = stats.as<float>();
  float* rsum = rmax + M;
  float* rtgt = rsum + M;
  LORA_CUDA_CHECK(cudaMemsetAsync(rtgt, 0, sizeof(float) * static_cast<size_t>(M), st));
  const unsigned row_blocks = grid_for(M, kCeWarps, 1u << 30);
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int64_t cw = V - v0 < chunk ? V - v0 : chunk;
    gemm("cross_entropy", M, cw, C, act_rowk(h, ht, ldh), weight_rowk(weight_rows(w, v0, cw)), out_mat(lc, ET::F32, chunk, false), 1, st);
    LORA_LAUNCH(ce_stats_kernel, dim3(row_blocks), dim3(kCeWarps * 32), 0, st, M, cw, v0, V, lc, chunk, targets, rmax, rsum, rtgt, logits);
    LORA_CHECK_LAUNCH();
  }
  LORA_LAUNCH(ce_finalize_kernel, dim3(1), dim3(256), 0, st, M, targets, ignore, rmax, rsum, rtgt, loss_rows, loss, count);
  LORA_CHECK_LAUNCH();
  if (!dh) return;
  const bool one = chunk == V;
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int64_t cw = V - v0 < chunk ? V - v0 : chunk;
    const WeightView wc = weight_rows(w, v0, cw);
    if (!one) gemm("cross_entropy", M, cw, C, act_rowk(h, ht, ldh), weight_rowk(wc), out_mat(lc, ET::F32, chunk, false), 1, st);
    LORA_LAUNCH(ce_grad_kernel, dim3(grid_for(M * cw, 256)), dim3(256), 0, st, M, cw, v0, lc, chunk, targets, ignore, rsum, grad_scale, count);
    LORA_CHECK_LAUNCH();
    gemm("cross_entropy", M, C, cw, act_rowk(lc, ET::F32, chunk), weight_krow(wc), out_mat(dh, ET::F32, C, v0 > 0), 1, st);
  }
}

}  // namespace lora::LORA_KNS
