// RMSNorm, rotary embeddings and SwiGLU (the Llama-shaped block's own ops), f32 (SwiGLU's gate/up may be bf16).
//
// RMSNorm: one warp per (row, group) - the normalised width is a hidden size or a head dim - with
// a shuffle reduction of Σx²; the backward's dx likewise, and dw with one thread per column summing
// every (row, group) in order (no atomics: the same bits on every run).
// RoPE and SwiGLU: grid-stride loops over the elements (a RoPE thread owns the pair i, i + D/2, so
// in place is safe); cos and sin are taken in f64 of the f32 angle and rounded to f32, as the
// reference does.
#pragma once

#include "common.cuh"

namespace lora::LORA_KNS {

constexpr int kRmsWarps = 4, kLlamaThreads = 256;

__global__ void __launch_bounds__(kRmsWarps * 32) rmsnorm_fwd_kernel(int64_t R, int64_t G, int64_t C, float eps, const float* x, int64_t ldx,
                                                                     const float* w, float* y, int64_t ldy, float* rstd) {
  const int lane = threadIdx.x & 31;
  const int64_t rg = static_cast<int64_t>(blockIdx.x) * kRmsWarps + (threadIdx.x >> 5);
  if (rg >= R) return;  // whole warps
  const float* xr = x + (rg / G) * ldx + (rg % G) * C;
  float* yr = y + (rg / G) * ldy + (rg % G) * C;
  float s = 0.f;
  for (int64_t c = lane; c < C; c += 32) s += xr[c] * xr[c];
  const float r = 1.f / sqrtf(warp_sum(s) / static_cast<float>(C) + eps);
  for (int64_t c = lane; c < C; c += 32) yr[c] = xr[c] * r * (w ? w[c] : 1.f);
  if (lane == 0) rstd[rg] = r;
}

__global__ void __launch_bounds__(kRmsWarps * 32) rmsnorm_bwd_kernel(int64_t R, int64_t G, int64_t C, const float* dy, int64_t lddy, const float* x,
                                                                     int64_t ldx, const float* w, const float* rstd, float* dx, int64_t lddx) {
  const int lane = threadIdx.x & 31;
  const int64_t rg = static_cast<int64_t>(blockIdx.x) * kRmsWarps + (threadIdx.x >> 5);
  if (rg >= R) return;
  const int64_t m = rg / G, g = rg % G;
  const float* xr = x + m * ldx + g * C;
  const float* dyr = dy + m * lddy + g * C;
  const float r = rstd[rg];
  float s = 0.f;
  for (int64_t c = lane; c < C; c += 32) s += dyr[c] * (w ? w[c] : 1.f) * (xr[c] * r);
  const float mgx = warp_sum(s) / static_cast<float>(C);
  for (int64_t c = lane; c < C; c += 32) dx[m * lddx + g * C + c] = r * (dyr[c] * (w ? w[c] : 1.f) - xr[c] * r * mgx);
}

__global__ void __launch_bounds__(kLlamaThreads) rmsnorm_dw_kernel(int64_t R, int64_t G, int64_t C, const float* dy, int64_t lddy, const float* x,
                                                                   int64_t ldx, const float* rstd, float* dw) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float acc = 0.f;
  for (int64_t rg = 0; rg < R; ++rg) {
    const int64_t m = rg / G, g = rg % G;
    acc += dy[m * lddy + g * C + c] * (x[m * ldx + g * C + c] * rstd[rg]);
  }
  dw[c] += acc;
}

__global__ void __launch_bounds__(kLlamaThreads) rope_kernel(int64_t M, int64_t H, int64_t D, const float* x, int64_t ldx, float* y, int64_t ldy,
                                                             const int32_t* pos, const float* inv_freq, bool inverse) {
  const int64_t half = D / 2, n = M * H * half;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, h = (e / half) % H, m = e / (half * H);
    const float ang = inv_freq[i] * static_cast<float>(pos[m]);
    const float c = static_cast<float>(cos(static_cast<double>(ang)));
    const float s = (inverse ? -1.f : 1.f) * static_cast<float>(sin(static_cast<double>(ang)));
    const float a = x[m * ldx + h * D + i], b = x[m * ldx + h * D + i + half];
    y[m * ldy + h * D + i] = a * c - b * s;
    y[m * ldy + h * D + i + half] = b * c + a * s;
  }
}

// gate/up are f32 or bf16 (gu: widened exactly by load_elem); y, dy and the grads f32.
__global__ void __launch_bounds__(kLlamaThreads) swiglu_kernel(int64_t M, int64_t F, const void* gate, int64_t ldg, const void* up, int64_t ldu,
                                                               ET gu, float* y, int64_t ldy) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < M * F; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = e / F, f = e % F;
    const float g = load_elem(gate, gu, m * ldg + f);
    y[m * ldy + f] = g / (1.f + expf(-g)) * load_elem(up, gu, m * ldu + f);
  }
}

__global__ void __launch_bounds__(kLlamaThreads) swiglu_bwd_kernel(int64_t M, int64_t F, const void* gate, int64_t ldg, const void* up, int64_t ldu,
                                                                   ET gu, const float* dy, int64_t lddy, float* dgate, int64_t lddg, float* dup,
                                                                   int64_t lddu) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < M * F; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = e / F, f = e % F;
    const float g = load_elem(gate, gu, m * ldg + f), u = load_elem(up, gu, m * ldu + f), d = dy[m * lddy + f];
    const float s = 1.f / (1.f + expf(-g));
    dgate[m * lddg + f] = d * u * (s * (1.f + g * (1.f - s)));
    dup[m * lddu + f] = d * (g * s);
  }
}

inline void rmsnorm_fwd(int64_t M, int64_t G, int64_t C, float eps, const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, float* rstd,
                        Stream s) {
  require(M >= 0 && G >= 1 && C >= 1 && M * G <= 0x7FFFFFFFLL * kRmsWarps, "rmsnorm_fwd", "bad sizes");
  if (M == 0) return;
  LORA_LAUNCH(rmsnorm_fwd_kernel, dim3(static_cast<unsigned>((M * G + kRmsWarps - 1) / kRmsWarps)), dim3(kRmsWarps * 32), 0, s, M * G, G, C, eps, x,
              ldx, w, y, ldy, rstd);
  LORA_CHECK_LAUNCH();
}
inline void rmsnorm_bwd(int64_t M, int64_t G, int64_t C, const float* dy, int64_t lddy, const float* x, int64_t ldx, const float* w, const float* rstd,
                        float* dx, int64_t lddx, float* dw, Stream s) {
  require(M >= 0 && G >= 1 && C >= 1 && M * G <= 0x7FFFFFFFLL * kRmsWarps, "rmsnorm_bwd", "bad sizes");
  if (M == 0) return;
  LORA_LAUNCH(rmsnorm_bwd_kernel, dim3(static_cast<unsigned>((M * G + kRmsWarps - 1) / kRmsWarps)), dim3(kRmsWarps * 32), 0, s, M * G, G, C, dy,
              lddy, x, ldx, w, rstd, dx, lddx);
  LORA_CHECK_LAUNCH();
  if (!dw) return;
  LORA_LAUNCH(rmsnorm_dw_kernel, dim3(static_cast<unsigned>((C + kLlamaThreads - 1) / kLlamaThreads)), dim3(kLlamaThreads), 0, s, M * G, G, C, dy,
              lddy, x, ldx, rstd, dw);
  LORA_CHECK_LAUNCH();
}
inline void rope(int64_t M, int64_t H, int64_t D, const float* x, int64_t ldx, float* y, int64_t ldy, const int32_t* pos, const float* inv_freq,
                 bool inverse, Stream s) {
  require(M >= 0 && H >= 1 && D >= 2 && D % 2 == 0, "rope", "bad sizes (the head dim must be even)");
  if (M == 0) return;
  LORA_LAUNCH(rope_kernel, dim3(grid_for(M * H * (D / 2), kLlamaThreads)), dim3(kLlamaThreads), 0, s, M, H, D, x, ldx, y, ldy, pos, inv_freq, inverse);
  LORA_CHECK_LAUNCH();
}
inline void swiglu(int64_t M, int64_t F, const void* gate, int64_t ldg, const void* up, int64_t ldu, ET gu, float* y, int64_t ldy, Stream s) {
  require(M >= 0 && F >= 0, "swiglu", "bad sizes");
  require(gu == ET::F32 || gu == ET::BF16, "swiglu", "gate/up must be f32 or bf16");
  if (M * F == 0) return;
  LORA_LAUNCH(swiglu_kernel, dim3(grid_for(M * F, kLlamaThreads)), dim3(kLlamaThreads), 0, s, M, F, gate, ldg, up, ldu, gu, y, ldy);
  LORA_CHECK_LAUNCH();
}
inline void swiglu_bwd(int64_t M, int64_t F, const void* gate, int64_t ldg, const void* up, int64_t ldu, ET gu, const float* dy, int64_t lddy,
                       float* dgate, int64_t lddg, float* dup, int64_t lddu, Stream s) {
  require(M >= 0 && F >= 0, "swiglu_bwd", "bad sizes");
  require(gu == ET::F32 || gu == ET::BF16, "swiglu_bwd", "gate/up must be f32 or bf16");
  if (M * F == 0) return;
  LORA_LAUNCH(swiglu_bwd_kernel, dim3(grid_for(M * F, kLlamaThreads)), dim3(kLlamaThreads), 0, s, M, F, gate, ldg, up, ldu, gu, dy, lddy, dgate,
              lddg, dup, lddu);
  LORA_CHECK_LAUNCH();
}

}  // namespace lora::LORA_KNS
