// Fused linear + cross-entropy over vocabulary chunks (ops.h CrossEntropy), one streamed pass.
// Only [M, chunk] logits exist at a time (scratch), plus O(M) row statistics. Per chunk:
//   logits_c = H·W_cᵀ (tensor-core GEMM, or the f32 GEMM for f32 H with f32/f16 W; W dequantized
//     inside the GEMM);
//   one warp per row updates its online max m and Σexp l (rescaled by alpha = exp(m_old - m_new)
//     when the max grows), picks the target's logit, copies the chunk into the optional full
//     `logits`, and (when dH is wanted) turns the chunk in place into P = exp(logits - m_new);
//   dH_acc = alpha ⊙ dH_acc + P·W_c (a GEMM whose accumulating epilogue rescales each row: the
//     flash-attention trick applied to the gradient).
// Then one block finishes lse, per-row loss, mean loss (f64) and the count of counted rows, and an
// elementwise pass makes dH = (dH_acc / l - W[target])·grad_scale/count (0 for ignored rows).
#pragma once

#include "gemm.cuh"

namespace lora::LORA_KNS {

constexpr int kCeWarps = 4;

__global__ void __launch_bounds__(kCeWarps * 32) ce_stats_kernel(int64_t M, int64_t cw, int64_t v0, int64_t V, float* lc, int64_t ldc,
                                                                const int32_t* targets, float* rmax, float* rsum, float* rtgt,
                                                                float* ralpha, float* logits, bool grad) {
  const int lane = threadIdx.x & 31;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * kCeWarps + (threadIdx.x >> 5);
  if (m >= M) return;
  float* row = lc + m * ldc;
  const int32_t t = targets[m];
  float mx = -INFINITY;
  for (int64_t j = lane; j < cw; j += 32) {
    const float v = row[j];
    mx = fmaxf(mx, v);
    if (logits) logits[m * V + v0 + j] = v;
    if (v0 + j == t) rtgt[m] = v;
  }
  mx = warp_max(mx);
  const float old = v0 == 0 ? -INFINITY : rmax[m];
  const float mn = fmaxf(old, mx);
  float s = 0.f;
  for (int64_t j = lane; j < cw; j += 32) {
    const float p = mn == -INFINITY ? 0.f : __expf(row[j] - mn);
    s += p;
    if (grad) row[j] = p;
  }
  s = warp_sum(s);
  if (lane == 0) {
    const float alpha = old == -INFINITY ? 0.f : __expf(old - mn);
    const float prev = v0 == 0 ? 0.f : rsum[m];
    rsum[m] = prev * alpha + s;
    rmax[m] = mn;
    ralpha[m] = alpha;
  }
}

// One block: lse, per-row loss, mean loss and count.
__global__ void __launch_bounds__(256) ce_finalize_kernel(int64_t M, const int32_t* targets, int32_t ignore, const float* rmax, const float* rsum,
                                                          const float* rtgt, float* loss_rows, double* loss, int64_t* count) {
  __shared__ double tot[256];
  __shared__ long long cnt[256];
  double t = 0.0;
  long long c = 0;
  for (int64_t m = threadIdx.x; m < M; m += 256) {
    const float lse = rmax[m] + logf(rsum[m]);
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

// dH = (dH_acc / l - W[target])·grad_scale/count for counted rows, 0 for ignored ones.
__global__ void __launch_bounds__(256) ce_grad_final_kernel(int64_t M, int64_t C, float* dh, WeightView w, const int32_t* targets,
                                                            int32_t ignore, const float* rsum, float grad_scale, const int64_t* count) {
  const int64_t n = M * C;
  const float g = *count > 0 ? grad_scale / static_cast<float>(*count) : 0.f;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = i / C, c = i % C;
    const int32_t t = targets[m];
    dh[i] = t == ignore ? 0.f : (dh[i] / rsum[m] - weight_elem(w, t, c)) * g;
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
  DeviceBuffer stats(sizeof(float) * static_cast<size_t>(4 * M));
  float* lc = lbuf.as<float>();
  float* rmax = stats.as<float>();
  float* rsum = rmax + M;
  float* rtgt = rsum + M;
  float* ralpha = rtgt + M;
  LORA_CUDA_CHECK(cudaMemsetAsync(rtgt, 0, sizeof(float) * static_cast<size_t>(M), st));
  const unsigned row_blocks = grid_for(M, kCeWarps, 1u << 30);
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int64_t cw = V - v0 < chunk ? V - v0 : chunk;
    const WeightView wc = weight_rows(w, v0, cw);
    gemm("cross_entropy", M, cw, C, act_rowk(h, ht, ldh), weight_rowk(wc), out_mat(lc, ET::F32, chunk, false), 1, st);
    LORA_LAUNCH(ce_stats_kernel, dim3(row_blocks), dim3(kCeWarps * 32), 0, st, M, cw, v0, V, lc, chunk, targets, rmax, rsum, rtgt, ralpha,
                logits, dh != nullptr);
    LORA_CHECK_LAUNCH();
    if (dh) {
      Epilogue e = out_mat(dh, ET::F32, C, v0 > 0);
      e.row_scale = ralpha;
      gemm("cross_entropy", M, C, cw, act_rowk(lc, ET::F32, chunk), weight_krow(wc), e, 1, st);
    }
  }
  LORA_LAUNCH(ce_finalize_kernel, dim3(1), dim3(256), 0, st, M, targets, ignore, rmax, rsum, rtgt, loss_rows, loss, count);
  LORA_CHECK_LAUNCH();
  if (dh) {
    LORA_LAUNCH(ce_grad_final_kernel, dim3(grid_for(M * C, 256)), dim3(256), 0, st, M, C, dh, w, targets, ignore, rsum, grad_scale, count);
    LORA_CHECK_LAUNCH();
  }
}

}  // namespace lora::LORA_KNS
