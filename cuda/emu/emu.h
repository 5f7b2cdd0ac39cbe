// lora CUDA emulator — compile CUDA kernel sources with a host C++ compiler and run them on the CPU.
//
// Each CUDA thread is a fiber; a block's fibers run on one OS thread and switch only at
// barriers and warp collectives; blocks are spread over a pool of worker threads. Errors
// (divergent barriers, bad warp masks, deadlocks, bad launch configurations, __trap) become a
// lora::emu::EmuError thrown from the launch call on the calling host thread.
//
// Kernel sources do not include this file directly: they include cuda/common/cuda_compat.cuh,
// which picks the CUDA toolkit headers under nvcc and this header under a host compiler.
#pragma once

#if defined(__CUDACC__)
#error "cuda/emu/emu.h is for host compilers only; under nvcc include cuda/common/cuda_compat.cuh"
#endif

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emu_fp.h"

#define LORA_EMU 1

// ---------------------------------------------------------------------------
// Execution-space keywords
// ---------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
// __noinline__ is not defined: libstdc++ spells __attribute__((__noinline__)); use LORA_NOINLINE.
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __grid_constant__
// Static shared memory: one copy per OS thread == one copy per running block (a block's fibers
// all run on one worker thread). Dynamic shared memory: see LORA_DYN_SMEM in cuda_compat.cuh.
#define __shared__ static thread_local
#ifndef warpSize
#define warpSize 32
#endif

// ---------------------------------------------------------------------------
// Thread geometry (per fiber; the scheduler rewrites these on every switch)
// ---------------------------------------------------------------------------
extern __thread uint3 threadIdx;
extern __thread uint3 blockIdx;
extern __thread uint3 blockDim;
extern __thread uint3 gridDim;

namespace lora::emu {

// The one error type of the emulator. Thrown from launch() on the host thread that launched.
class EmuError : public std::runtime_error {
 public:
  explicit EmuError(const std::string& what) : std::runtime_error(what) {}
};

struct Site {
  const char* file;
  int line;
};
#define LORA_EMU_SITE (::lora::emu::Site{__FILE__, __LINE__})
// As a default argument: the file:line of the caller (GCC/Clang builtins).
#define LORA_EMU_CALLER (::lora::emu::Site{__builtin_FILE(), __builtin_LINE()})

enum class Order { Forward, Reversed, Shuffled };

// Scheduling overrides for tests. By default every launch reads LORA_EMU_ORDER
// (forward|reversed|shuffled) and LORA_EMU_SEED from the environment.
void set_order_override(Order order, uint64_t seed);
void clear_order_override();
// Current effective order/seed (override, else environment).
Order current_order();
uint64_t current_seed();
// Number of worker threads used for launches (LORA_EMU_THREADS, default hardware concurrency).
unsigned worker_count();
// Fiber stack size in bytes (LORA_EMU_STACK_KB, default 256 KiB; 1 MiB under ASan).
size_t fiber_stack_bytes();
// Which context switch this build uses ("x86-64 asm" or "ucontext").
const char* context_switch_kind();

// ---- device-side entry points (called from inside a kernel) ----
void syncthreads(Site site);
int syncthreads_count(Site site, int pred);
void syncwarp(Site site, unsigned mask);
unsigned long long shfl_raw(Site site, int kind, unsigned mask, unsigned long long value, int arg, int width,
                            const char* name);
unsigned ballot(Site site, unsigned mask, int pred, const char* name);
unsigned activemask();
unsigned lane_id();
unsigned char* dynamic_smem();
[[noreturn]] void trap(Site site);

// Warp-collective helpers used by cuda/common/mma.cuh.
void warp_mma_m16n8k16_bf16(Site site, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]);
void warp_mma_m16n8k16_f16(Site site, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]);
void warp_ldmatrix(Site site, int num, bool trans, const void* row_addr, uint32_t* out);
void cp_async(Site site, void* smem_dst, const void* gmem_src, int bytes, int src_bytes);
void cp_async_commit(Site site);
void cp_async_wait(Site site, int keep_pending);

enum ShflKind { kShflIdx = 0, kShflUp = 1, kShflDown = 2, kShflXor = 3 };

template <class T>
inline T shfl_typed(Site site, int kind, unsigned mask, T value, int arg, int width, const char* name) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "__shfl*_sync: value must be a trivially copyable type of at most 8 bytes");
  unsigned long long raw = 0;
  std::memcpy(&raw, &value, sizeof(T));
  raw = shfl_raw(site, kind, mask, raw, arg, width, name);
  T out;
  std::memcpy(&out, &raw, sizeof(T));
  return out;
}

// ---- host side ----
using KernelThunk = void (*)(const void* params);

struct LaunchSpec {
  const char* kernel_name;
  const void* kernel_id;  // the kernel's function pointer, for attributes
  Site site;              // where LORA_LAUNCH was written
  dim3 grid, block;
  size_t smem_bytes;
  KernelThunk thunk;
  const void* params;
};
void launch_raw(const LaunchSpec& spec);
void set_max_dynamic_smem(const void* kernel_id, int bytes);

template <class... P>
struct KernelCall {
  void (*fn)(P...);
  std::tuple<std::decay_t<P>...> args;
  static void invoke(const void* self) {
    const auto* call = static_cast<const KernelCall*>(self);
    std::apply(call->fn, call->args);  // each CUDA thread gets its own copy of the parameters
  }
};

template <class... P, class... A>
inline void launch(Site site, const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                   A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "LORA_LAUNCH: wrong number of kernel arguments");
  KernelCall<P...> call{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  LaunchSpec spec{name, reinterpret_cast<const void*>(kernel), site, grid, block, smem,
                  &KernelCall<P...>::invoke, &call};
  launch_raw(spec);
}

}  // namespace lora::emu

// ---------------------------------------------------------------------------
// Device intrinsics
// ---------------------------------------------------------------------------
#define __syncthreads() ::lora::emu::syncthreads(LORA_EMU_SITE)
#define __syncthreads_count(p) ::lora::emu::syncthreads_count(LORA_EMU_SITE, (p) ? 1 : 0)
#define __syncthreads_or(p) (::lora::emu::syncthreads_count(LORA_EMU_SITE, (p) ? 1 : 0) != 0)
#define __syncthreads_and(p) \
  (::lora::emu::syncthreads_count(LORA_EMU_SITE, (p) ? 1 : 0) == static_cast<int>(blockDim.x * blockDim.y * blockDim.z))
#define __syncwarp(...) ::lora::emu::syncwarp(LORA_EMU_SITE, ::lora::emu::detail_mask_or_full(__VA_ARGS__))
#define __shfl_sync(mask, v, ...) \
  ::lora::emu::shfl_typed(LORA_EMU_SITE, ::lora::emu::kShflIdx, (mask), (v), LORA_EMU_ARG_WIDTH(__VA_ARGS__), "__shfl_sync")
#define __shfl_up_sync(mask, v, ...) \
  ::lora::emu::shfl_typed(LORA_EMU_SITE, ::lora::emu::kShflUp, (mask), (v), LORA_EMU_ARG_WIDTH(__VA_ARGS__), "__shfl_up_sync")
#define __shfl_down_sync(mask, v, ...)                                                                \
  ::lora::emu::shfl_typed(LORA_EMU_SITE, ::lora::emu::kShflDown, (mask), (v), LORA_EMU_ARG_WIDTH(__VA_ARGS__), \
                          "__shfl_down_sync")
#define __shfl_xor_sync(mask, v, ...) \
  ::lora::emu::shfl_typed(LORA_EMU_SITE, ::lora::emu::kShflXor, (mask), (v), LORA_EMU_ARG_WIDTH(__VA_ARGS__), "__shfl_xor_sync")
#define __ballot_sync(mask, p) ::lora::emu::ballot(LORA_EMU_SITE, (mask), (p) ? 1 : 0, "__ballot_sync")
#define __any_sync(mask, p) (::lora::emu::ballot(LORA_EMU_SITE, (mask), (p) ? 1 : 0, "__any_sync") != 0u)
#define __all_sync(mask, p) \
  (::lora::emu::detail_all(::lora::emu::ballot(LORA_EMU_SITE, (mask), (p) ? 1 : 0, "__all_sync"), (mask)))
#define __activemask() ::lora::emu::activemask()
#define __trap() ::lora::emu::trap(LORA_EMU_SITE)

// "arg" or "arg, width" -> "arg, width" with width defaulting to 32
#define LORA_EMU_ARG_WIDTH(...) LORA_EMU_ARG_WIDTH_PICK(__VA_ARGS__, 32, 0)
#define LORA_EMU_ARG_WIDTH_PICK(a, w, ...) (a), (w)

namespace lora::emu {
inline unsigned detail_mask_or_full() { return 0xFFFFFFFFu; }
inline unsigned detail_mask_or_full(unsigned m) { return m; }
inline bool detail_all(unsigned votes, unsigned mask) { return (votes & mask) == mask; }
}  // namespace lora::emu

namespace lora::emu::cuda_api {

template <class T>
inline T __ldg(const T* p) { return *p; }
template <class T>
inline T __ldcs(const T* p) { return *p; }
template <class T>
inline void __stcs(T* p, T v) { *p = v; }

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------------------
// Atomics: real atomics, since blocks run concurrently on worker threads
// ---------------------------------------------------------------------------
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline int atomicSub(int* p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicSub(unsigned* p, unsigned v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicExch(unsigned long long* p, unsigned long long v) {
  return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}
inline int atomicCAS(int* p, int expected, int desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
}
inline unsigned atomicCAS(unsigned* p, unsigned expected, unsigned desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
}
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long expected, unsigned long long desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
}
inline unsigned short atomicCAS(unsigned short* p, unsigned short expected, unsigned short desired) {
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
}
#define LORA_EMU_ATOMIC_MINMAX(T)                                                                  \
  inline T atomicMax(T* p, T v) {                                                                  \
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                                  \
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
    }                                                                                              \
    return old;                                                                                    \
  }                                                                                                \
  inline T atomicMin(T* p, T v) {                                                                  \
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                                  \
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
    }                                                                                              \
    return old;                                                                                    \
  }
LORA_EMU_ATOMIC_MINMAX(int)
LORA_EMU_ATOMIC_MINMAX(unsigned)
LORA_EMU_ATOMIC_MINMAX(long long)
LORA_EMU_ATOMIC_MINMAX(unsigned long long)
#undef LORA_EMU_ATOMIC_MINMAX
inline int atomicAnd(int* p, int v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAnd(unsigned* p, unsigned v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }
inline int atomicOr(int* p, int v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicOr(unsigned* p, unsigned v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
inline int atomicXor(int* p, int v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicXor(unsigned* p, unsigned v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }

template <class F, class Bits>
inline F atomic_float_update(F* p, F v, bool add) {
  static_assert(sizeof(F) == sizeof(Bits), "size");
  Bits* bp = reinterpret_cast<Bits*>(p);
  Bits old = __atomic_load_n(bp, __ATOMIC_RELAXED);
  for (;;) {
    F cur = ::lora::emu::bit_cast<F>(old);
    F next = add ? cur + v : v;
    if (__atomic_compare_exchange_n(bp, &old, ::lora::emu::bit_cast<Bits>(next), true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return cur;
  }
}
inline float atomicAdd(float* p, float v) { return atomic_float_update<float, uint32_t>(p, v, true); }
inline double atomicAdd(double* p, double v) { return atomic_float_update<double, uint64_t>(p, v, true); }
inline float atomicExch(float* p, float v) { return atomic_float_update<float, uint32_t>(p, v, false); }

// ---------------------------------------------------------------------------
// Host runtime API subset (synchronous; "device" memory is host memory)
// ---------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct CUstream_st;
using cudaStream_t = CUstream_st*;

const char* cudaGetErrorString(cudaError_t err);
const char* cudaGetErrorName(cudaError_t err);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
template <class T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
template <class... P>
inline cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0) return cudaErrorInvalidValue;
  ::lora::emu::set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), value);
  return cudaSuccess;
}

}  // namespace lora::emu::cuda_api
