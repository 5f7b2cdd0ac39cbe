// Elementwise ops (relu, relu backward, add, scale, cast, dropout), AdamW and Σx².
//
// Tiling: grid-stride loops, 256 threads per block, at most 4096 blocks; each thread handles
// elements i, i + stride, ... (coalesced). Σx² reduces per thread in f64, then per warp with
// shuffles, per block through shared memory, and adds the block's partial to the f64 result with
// one atomicAdd (so the summation order, and the last bits, vary from run to run).
#pragma once

#include "common.cuh"

namespace lora::LORA_KNS {

constexpr int kEwThreads = 256;

#define LORA_GRID_STRIDE(i, n) \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void __launch_bounds__(kEwThreads) relu_kernel(int64_t n, const float* x, float* y) {
  LORA_GRID_STRIDE(i, n) { const float v = x[i]; y[i] = v > 0.f ? v : 0.f; }
}
__global__ void __launch_bounds__(kEwThreads) relu_bwd_kernel(int64_t n, const float* y, const float* dy, float* dx) {
  LORA_GRID_STRIDE(i, n) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}
// relu with its keep mask over an [M, N] matrix (x and y of element type t, f32/bf16, rows ld
// apart; y may be x): one warp per 32 consecutive elements of the flat index m*N + n (a
// warp-uniform loop, so every lane reaches the ballot); lane 0 stores the 32 keep bits as the low
// or high half of their 64-bit word (little-endian words). The loop covers whole words, so bits
// past M*N are written as 0. The value tested is the stored one (a bf16 after its rounding); NaN
// counts as kept (as the reference does). The relu op is the case M = 1, f32.
__global__ void __launch_bounds__(kEwThreads) relu_bits_kernel(int64_t M, int64_t N, const void* x, void* y, ET t, int64_t ld, uint32_t* half_words) {
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int64_t n = M * N, covered = (n + 63) / 64 * 64;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x - lane; i0 < covered; i0 += stride) {
    const int64_t i = i0 + lane;
    bool keep = false;
    if (i < n) {
      const int64_t at = (i / N) * ld + i % N;
      const float v = load_elem(x, t, at);
      keep = v > 0.f || v != v;
      store_elem(y, t, at, keep ? v : 0.f);
    }
    const unsigned m = __ballot_sync(0xffffffffu, keep);
    if (lane == 0) half_words[i0 / 32] = m;
  }
}
// y[m*ldy + n] = src[m*lds + n] in y's element type t (f32 src: one rounding for a bf16/f16 y).
__global__ void __launch_bounds__(kEwThreads) store_rows_kernel(int64_t M, int64_t N, const float* src, int64_t lds, void* y, ET t, int64_t ldy) {
  LORA_GRID_STRIDE(i, M * N) store_elem(y, t, (i / N) * ldy + i % N, src[(i / N) * lds + i % N]);
}
__global__ void __launch_bounds__(kEwThreads) relu_bwd_bits_kernel(int64_t n, const uint64_t* bits, const float* dy, float* dx) {
  LORA_GRID_STRIDE(i, n) dx[i] = (bits[i >> 6] >> (i & 63)) & 1u ? dy[i] : 0.f;
}
__global__ void __launch_bounds__(kEwThreads) add_kernel(int64_t n, const float* a, const float* b, float alpha, float* out) {
  LORA_GRID_STRIDE(i, n) out[i] = a[i] + alpha * b[i];
}
__global__ void __launch_bounds__(kEwThreads) scale_kernel(int64_t n, const float* x, float alpha, float* out) {
  LORA_GRID_STRIDE(i, n) out[i] = alpha * x[i];
}
__global__ void __launch_bounds__(kEwThreads) cast_kernel(int64_t n, const void* src, ET st, void* dst, ET dt) {
  LORA_GRID_STRIDE(i, n) store_elem(dst, dt, i, load_elem(src, st, i));
}
__global__ void __launch_bounds__(kEwThreads) dropout_kernel(int64_t n, const float* x, DropoutArgs d, float* out) {
  LORA_GRID_STRIDE(i, n) out[i] = x[i] * dropout_factor(d, static_cast<uint64_t>(i));
}
struct AdamWArgs {
  float lr, beta1, beta2, eps, wd, grad_scale;
  double step_size, sqrt_bc2;
};
__global__ void __launch_bounds__(kEwThreads) adamw_kernel(int64_t n, float* p, const float* g, float* m, float* v, AdamWArgs a) {
  LORA_GRID_STRIDE(i, n) {
    const double gi = static_cast<double>(g[i]) * a.grad_scale;
    double w = p[i] * (1.0 - static_cast<double>(a.lr) * a.wd);
    const double mi = a.beta1 * static_cast<double>(m[i]) + (1.0 - a.beta1) * gi;
    const double vi = a.beta2 * static_cast<double>(v[i]) + (1.0 - a.beta2) * gi * gi;
    w -= a.step_size * mi / (sqrt(vi) / a.sqrt_bc2 + a.eps);
    p[i] = static_cast<float>(w);
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
  }
}
__global__ void __launch_bounds__(kEwThreads) sum_squares_kernel(int64_t n, const float* x, double* out) {
  __shared__ double red[kEwThreads / 32];
  double s = 0.0;
  LORA_GRID_STRIDE(i, n) { const double v = x[i]; s += v * v; }
  s = warp_sum_d(s);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < kEwThreads / 32; ++w) t += red[w];
    atomicAdd(out, t);
  }
}
#undef LORA_GRID_STRIDE

#define LORA_EW_LAUNCH(kernel, n, s, ...)                                                   \
  do {                                                                                      \
    if ((n) <= 0) return;                                                                   \
    LORA_LAUNCH(kernel, dim3(grid_for((n), kEwThreads)), dim3(kEwThreads), 0, s, __VA_ARGS__); \
    LORA_CHECK_LAUNCH();                                                                    \
  } while (0)

// bits (optional): the keep mask, ceil(n/64) words (see relu_bits_kernel).
inline void relu(int64_t n, const float* x, float* y, uint64_t* bits, Stream s) {
  require(n >= 0 && (n == 0 || (x && y)), "relu", "bad arguments");
  if (bits) LORA_EW_LAUNCH(relu_bits_kernel, n, s, int64_t(1), n, x, y, ET::F32, n, reinterpret_cast<uint32_t*>(bits));
  else LORA_EW_LAUNCH(relu_kernel, n, s, n, x, y);
}
// bits (optional) replaces y: dx = dy where the forward's keep bit is set.
inline void relu_bwd(int64_t n, const float* y, const float* dy, float* dx, const uint64_t* bits, Stream s) {
  require(n >= 0 && (n == 0 || ((y || bits) && dy && dx)), "relu_bwd", "bad arguments");
  if (bits) LORA_EW_LAUNCH(relu_bwd_bits_kernel, n, s, n, bits, dy, dx);
  else LORA_EW_LAUNCH(relu_bwd_kernel, n, s, n, y, dy, dx);
}
inline void add(int64_t n, const float* a, const float* b, float alpha, float* out, Stream s) {
  require(n >= 0 && (n == 0 || (a && b && out)), "add", "bad arguments");
  LORA_EW_LAUNCH(add_kernel, n, s, n, a, b, alpha, out);
}
inline void scale(int64_t n, const float* x, float alpha, float* out, Stream s) {
  require(n >= 0 && (n == 0 || (x && out)), "scale", "bad arguments");
  LORA_EW_LAUNCH(scale_kernel, n, s, n, x, alpha, out);
}
inline void cast(int64_t n, const void* src, ET st, void* dst, ET dt, Stream s) {
  require(st == ET::F32 || st == ET::F16 || st == ET::BF16, "cast", "source must be f32/f16/bf16");
  require(dt == ET::F32 || dt == ET::F16 || dt == ET::BF16, "cast", "destination must be f32/f16/bf16");
  LORA_EW_LAUNCH(cast_kernel, n, s, n, src, st, dst, dt);
}
inline void dropout(int64_t n, const float* x, float p, uint64_t seed, uint64_t offset, float* out, Stream s) {
  require(p >= 0.f && p <= 1.f, "dropout", "p must be in [0, 1]");
  LORA_EW_LAUNCH(dropout_kernel, n, s, n, x, make_dropout(p, seed, offset), out);
}
inline void adamw(int64_t n, float* p, const float* g, float* m, float* v, float lr, float beta1, float beta2, float eps,
                  float wd, float grad_scale, int64_t step, Stream s) {
  require(step >= 1, "adamw", "step must be >= 1");
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  const AdamWArgs a{lr, beta1, beta2, eps, wd, grad_scale, lr / bc1, std::sqrt(bc2)};
  LORA_EW_LAUNCH(adamw_kernel, n, s, n, p, g, m, v, a);
}
// out (device) = Σ x². Overwrites: zeroes `out` first (cudaMemsetAsync), then accumulates.
inline void sum_squares(int64_t n, const float* x, double* out, Stream s) {
  LORA_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), s));
  LORA_EW_LAUNCH(sum_squares_kernel, n, s, n, x, out);
}

// ---- quantization (ops.h Quantize / Dequantize) ----
// i8: one block per row (block absmax reduction, then the codes). int4/nf4: one warp per quant
// block of `block` elements (lanes over pairs; each lane writes whole bytes, so no two threads
// share a byte).
__global__ void __launch_bounds__(kEwThreads) quantize_i8_kernel(int64_t rows, int64_t cols, const float* src, int8_t* q, float* scales) {
  __shared__ float red[kEwThreads / 32];
  const int64_t r = blockIdx.x;
  const float* row = src + r * cols;
  float amax = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kEwThreads) amax = fmaxf(amax, fabsf(row[c]));
  amax = warp_max(amax);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = amax;
  __syncthreads();
  float m = 0.f;
  for (int w = 0; w < kEwThreads / 32; ++w) m = fmaxf(m, red[w]);
  if (threadIdx.x == 0) scales[r] = m;
  const float inv = m > 0.f ? 127.f / m : 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kEwThreads) {
    const float v = rintf(row[c] * inv);
    q[r * cols + c] = static_cast<int8_t>(fmaxf(-127.f, fminf(127.f, v)));
  }
}
__device__ __forceinline__ unsigned nf4_code(float x) {
  unsigned best = 0;
  float bd = fabsf(x - nf4_value(0));
  for (unsigned i = 1; i < 16; ++i) {
    const float d = fabsf(x - nf4_value(i));
    if (d < bd) { bd = d; best = i; }
  }
  return best;
}
__global__ void __launch_bounds__(kEwThreads) quantize_4bit_kernel(int64_t nblocks, int64_t block, const float* src, bool nf4, uint8_t* out, float* scales) {
  const int lane = threadIdx.x & 31;
  const int64_t b = static_cast<int64_t>(blockIdx.x) * (kEwThreads / 32) + (threadIdx.x >> 5);
  if (b >= nblocks) return;  // whole warps leave together
  const float* x = src + b * block;
  float amax = 0.f;
  for (int64_t i = lane; i < block; i += 32) amax = fmaxf(amax, fabsf(x[i]));
  amax = warp_max(amax);
  if (lane == 0) scales[b] = amax;
  const float inv = amax > 0.f ? 1.f / amax : 0.f;
  for (int64_t j = lane; j < block / 2; j += 32) {
    unsigned q[2];
    for (int h = 0; h < 2; ++h) {
      const float v = x[2 * j + h] * inv;
      q[h] = nf4 ? nf4_code(v) : static_cast<unsigned>(fmaxf(0.f, fminf(15.f, rintf(v * 7.f) + 8.f)));
    }
    out[(b * block) / 2 + j] = static_cast<uint8_t>((q[0] << 4) | q[1]);
  }
}
__global__ void __launch_bounds__(kEwThreads) dequantize_kernel(WeightView w, float* dst) {
  const int64_t n = w.rows * w.cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = weight_elem(w, i / w.cols, i % w.cols);
}

inline void quantize(int64_t rows, int64_t cols, int64_t block, const float* src, ET t, void* packed, float* scales, Stream s) {
  require(rows >= 0 && cols >= 0, "quantize", "negative size");
  if (rows == 0 || cols == 0) return;
  if (t == ET::I8) {
    require(rows <= 0x7FFFFFFF, "quantize", "too many rows");
    LORA_LAUNCH(quantize_i8_kernel, dim3(static_cast<unsigned>(rows)), dim3(kEwThreads), 0, s, rows, cols, src,
                static_cast<int8_t*>(packed), scales);
    LORA_CHECK_LAUNCH();
    return;
  }
  require(t == ET::INT4 || t == ET::NF4, "quantize", "dtype must be i8, int4 or nf4");
  require(block > 0 && block % 2 == 0 && cols % block == 0, "quantize", "block must be even and divide the row length");
  const int64_t nb = rows * cols / block;
  LORA_LAUNCH(quantize_4bit_kernel, dim3(grid_for(nb, kEwThreads / 32, 1u << 30)), dim3(kEwThreads), 0, s, nb, block, src,
              t == ET::NF4, static_cast<uint8_t*>(packed), scales);
  LORA_CHECK_LAUNCH();
}
inline void dequantize(const WeightView& w, float* dst, Stream s) {
  LORA_EW_LAUNCH(dequantize_kernel, w.rows * w.cols, s, w, dst);
}
#undef LORA_EW_LAUNCH

}  // namespace lora::LORA_KNS
