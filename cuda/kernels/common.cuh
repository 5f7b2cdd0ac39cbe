// Shared device helpers of the op kernels: element types, activation/weight element access,
// Philox4x32-10 dropout (the mapping of packages/core-native/src/ops/ops.h), warp/block reductions.
//
// Every kernel header lives in namespace lora::LORA_KNS, which is `kgpu` under nvcc and `kemu`
// under the emulator: the addon links both builds of the same sources into one binary, and the two
// must never share a mangled name.
#pragma once

#include "../common/cuda_compat.cuh"
#include "../common/mma.cuh"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

// `LORA_UNROLL` for nvcc, nothing for the host compiler (which would warn about it).
#if defined(__CUDACC__)
#define LORA_UNROLL _Pragma("unroll")
#else
#define LORA_UNROLL
#endif

#if defined(__CUDACC__)
#define LORA_KNS kgpu
#else
#define LORA_KNS kemu
#endif

namespace lora::LORA_KNS {

using ::lora::cuda::Stream;

// Element types as the kernels see them (mirrors lora::DType for the formats kernels read).
enum class ET : int { F32 = 0, F16 = 1, BF16 = 2, I8 = 3, INT4 = 4, NF4 = 5 };

// A launcher's validation failure (the backend turns it into a lora::Error).
class KernelArgError : public std::invalid_argument {
 public:
  explicit KernelArgError(const std::string& what) : std::invalid_argument(what) {}
};
inline void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw KernelArgError(std::string(op) + ": " + what);
}
inline bool aligned(const void* p, unsigned bytes) { return (reinterpret_cast<uintptr_t>(p) % bytes) == 0; }

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }
__device__ __forceinline__ uint16_t f32_to_bf16_bits_rn(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  const uint32_t r = u + 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(r >> 16);
}
__device__ __forceinline__ float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  if (exp == 0) {
    if (man == 0) return __uint_as_float(sign);
    // subnormal: value = man * 2^-24
    const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return __uint_as_float(sign | 0x7F800000u | (man << 13));
  return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}
__device__ __forceinline__ uint16_t f32_to_f16_bits_rn(float f) {
  const uint32_t u = __float_as_uint(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (a > 0x7F800000u ? 0x200u : 0u));
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to >= 65520 -> inf
  if (a < 0x38800000u) {                                                // below 2^-14: subnormal or 0
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);            // < 2^-25: rounds to 0
    const uint32_t e = a >> 23, m = (a & 0x7FFFFFu) | 0x800000u;
    const uint32_t sh = 126u - e;  // value / 2^-24 = m * 2^(e - 126), 14 <= sh <= 24
    uint32_t q = m >> sh;
    const uint32_t rem = m & ((1u << sh) - 1u), half = 1u << (sh - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t r = a + 0x0FFFu + ((a >> 13) & 1u);
  r -= 0x38000000u;  // rebias 127 -> 15
  return static_cast<uint16_t>(sign | (r >> 13));
}

__device__ __forceinline__ float load_elem(const void* p, ET t, int64_t i) {
  switch (t) {
    case ET::BF16: return bf16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
    case ET::F16: return f16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}
__device__ __forceinline__ void store_elem(void* p, ET t, int64_t i, float v) {
  switch (t) {
    case ET::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16_bits_rn(v); break;
    case ET::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16_bits_rn(v); break;
    default: static_cast<float*>(p)[i] = v;
  }
}

__device__ __forceinline__ float nf4_value(unsigned q) {
  switch (q & 15u) {
    case 0: return -1.0f;
    case 1: return -0.6961928009986877f;
    case 2: return -0.5250730514526367f;
    case 3: return -0.39491748809814453f;
    case 4: return -0.28444138169288635f;
    case 5: return -0.18477343022823334f;
    case 6: return -0.09105003625154495f;
    case 7: return 0.0f;
    case 8: return 0.07958029955625534f;
    case 9: return 0.16093020141124725f;
    case 10: return 0.24611230194568634f;
    case 11: return 0.33791524171829224f;
    case 12: return 0.44070982933044434f;
    case 13: return 0.5626170039176941f;
    case 14: return 0.7229568362236023f;
    default: return 1.0f;
  }
}

// A linear weight [rows, cols] (see ops.h Weight): plain or quantized with scales.
struct WeightView {
  const void* data;
  const float* scales;
  ET type;
  int64_t rows, cols, block;
};

// W[n][k] as f32, dequantized in registers.
__device__ __forceinline__ float weight_elem(const WeightView& w, int64_t n, int64_t k) {
  const int64_t i = n * w.cols + k;
  switch (w.type) {
    case ET::F32: return static_cast<const float*>(w.data)[i];
    case ET::F16: return f16_bits_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case ET::BF16: return bf16_bits_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case ET::I8: return static_cast<float>(static_cast<const int8_t*>(w.data)[i]) * (w.scales[n] / 127.f);
    case ET::INT4: {
      const uint8_t b = static_cast<const uint8_t*>(w.data)[i >> 1];
      const unsigned q = (i & 1) ? (b & 0xFu) : (b >> 4);
      return (static_cast<float>(q) - 8.f) / 7.f * w.scales[i / w.block];
    }
    default: {
      const uint8_t b = static_cast<const uint8_t*>(w.data)[i >> 1];
      const unsigned q = (i & 1) ? (b & 0xFu) : (b >> 4);
      return nf4_value(q) * w.scales[i / w.block];
    }
  }
}

// ---- dropout: Philox4x32-10, key = seed, counter = {lo32(e/4), hi32(e/4), 0, 0}, word e%4 ----
struct DropoutArgs {
  float p;          // 0 = inactive
  uint32_t thresh;  // keep iff word >= thresh
  float keep_scale;
  uint64_t seed, offset;
};
inline DropoutArgs make_dropout(float p, uint64_t seed, uint64_t offset) {
  DropoutArgs d{p, 0u, 1.f, seed, offset};
  if (p > 0.f) {
    const double t = std::floor(static_cast<double>(p) * 4294967296.0);
    d.thresh = t >= 4294967295.0 ? 4294967295u : static_cast<uint32_t>(t);
    d.keep_scale = p >= 1.f ? 0.f : 1.f / (1.f - p);
  }
  return d;
}

__device__ __forceinline__ uint32_t philox_word(uint64_t seed, uint64_t counter, unsigned word) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0u, c3 = 0u;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
LORA_UNROLL
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return word == 0 ? c0 : word == 1 ? c1 : word == 2 ? c2 : c3;
}

// The factor (0 or 1/(1-p)) of logical element e (the caller's offset is added here).
__device__ __forceinline__ float dropout_factor(const DropoutArgs& d, uint64_t e) {
  if (!(d.p > 0.f)) return 1.f;
  if (d.p >= 1.f) return 0.f;
  e += d.offset;
  return philox_word(d.seed, e >> 2, static_cast<unsigned>(e & 3u)) >= d.thresh ? d.keep_scale : 0.f;
}

// ---- reductions ----
__device__ __forceinline__ float warp_sum(float v) {
LORA_UNROLL
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
LORA_UNROLL
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
LORA_UNROLL
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}

// Sum over a block of NW warps through `red` (NW floats of shared memory); every thread gets it.
template <int NW>
__device__ __forceinline__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) red[w] = v;
  __syncthreads();
  float t = 0.f;
LORA_UNROLL
  for (int i = 0; i < NW; ++i) t += red[i];
  __syncthreads();
  return t;
}

inline unsigned grid_for(int64_t n, int block, unsigned cap = 4096u) {
  const int64_t g = (n + block - 1) / block;
  return static_cast<unsigned>(g < 1 ? 1 : (g > cap ? cap : g));
}

}  // namespace lora::LORA_KNS

namespace lora::LORA_KNS {
// Where launchers' scratch memory comes from. A backend installs hooks into its caching allocator
// (the addon: allocator_for(cuda:i) under nvcc, allocator_for(emu) under the emulator) so scratch
// shows up in its allocated/peak statistics and is reused instead of paying cudaMalloc per call.
// `alloc` returns the block and its size in *block (throwing on failure); `release` takes back
// the block, its size and the requested bytes. Without hooks, cudaMalloc/cudaFree.
// Release happens when the launcher returns, possibly before its kernels have finished: that is
// safe only because every op of a device runs on one stream (a block handed out again is used by
// later work on the same stream) and host copies into fresh tensors go through the blocking
// legacy default stream.
struct ScratchHooks {
  void* (*alloc)(size_t bytes, size_t* block) = nullptr;
  void (*release)(void* p, size_t block, size_t bytes) = nullptr;
};
inline ScratchHooks& scratch_hooks() {
  static ScratchHooks h;
  return h;
}

// Scratch device memory for a launcher (host memory under the emulator).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (!bytes) return;
    const ScratchHooks& h = scratch_hooks();
    if (h.alloc && h.release) {
      p_ = h.alloc(bytes, &block_);
      release_ = h.release;
    } else {
      LORA_CUDA_CHECK(cudaMalloc(&p_, bytes));
    }
  }
  ~DeviceBuffer() {
    if (!p_) return;
    if (release_) release_(p_, block_, bytes_);
    else cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0, block_ = 0;
  void (*release_)(void*, size_t, size_t) = nullptr;
};

// Rows [r0, r0 + n) of a weight, as a weight of its own (packed formats keep whole bytes and scales).
inline WeightView weight_rows(const WeightView& w, int64_t r0, int64_t n) {
  WeightView v = w;
  v.rows = n;
  const int64_t e = r0 * w.cols;
  switch (w.type) {
    case ET::F32: v.data = static_cast<const float*>(w.data) + e; break;
    case ET::F16:
    case ET::BF16: v.data = static_cast<const uint16_t*>(w.data) + e; break;
    case ET::I8: v.data = static_cast<const int8_t*>(w.data) + e; v.scales = w.scales + r0; break;
    default: v.data = static_cast<const uint8_t*>(w.data) + e / 2; v.scales = w.scales + e / w.block; break;
  }
  return v;
}
}  // namespace lora::LORA_KNS
