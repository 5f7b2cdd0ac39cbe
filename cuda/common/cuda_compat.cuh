// The one include for kernel sources and their launchers.
//
// Under nvcc it pulls in the CUDA toolkit headers; under a host compiler it pulls in the CPU
// emulator (cuda/emu/emu.h), so the same .cuh compiles both ways. It also defines the few
// macros that must differ between the two:
//
//   LORA_LAUNCH(kernel, grid, block, smemBytes, stream, args...)
//       kernel<<<grid, block, smemBytes, stream>>>(args...) under nvcc; a synchronous emulated
//       launch under the emulator (errors throw lora::emu::EmuError). Wrap template kernels in
//       parentheses: LORA_LAUNCH((my_kernel<64, 4>), ...).
//   LORA_DYN_SMEM(T, name)
//       declares `T* name` pointing at the block's dynamic shared memory (extern __shared__
//       under nvcc; a per-block buffer filled with 0xFF bytes under the emulator).
//   LORA_CUDA_CHECK(call)      throws lora::cuda::CudaError naming call, file:line and the
//                              CUDA error string when `call` does not return cudaSuccess.
//   LORA_CHECK_LAUNCH()        LORA_CUDA_CHECK(cudaGetLastError()) — put it after a launch.
//   lora::cuda::Stream         cudaStream_t in both worlds.
//   LORA_NOINLINE              __noinline__ (which the emulator cannot define: libstdc++ uses it).
#pragma once

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#else
#include "../emu/emu.h"
#endif

#include <cstdint>
#include <stdexcept>
#include <string>

namespace lora::cuda {

using Stream = cudaStream_t;

class CudaError : public std::runtime_error {
 public:
  CudaError(const char* call, const char* file, int line, cudaError_t err)
      : std::runtime_error(std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " +
                           cudaGetErrorString(err)),
        code_(err) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

}  // namespace lora::cuda

#define LORA_CUDA_CHECK(call)                                                        \
  do {                                                                               \
    cudaError_t lora_cuda_err_ = (call);                                             \
    if (lora_cuda_err_ != cudaSuccess)                                               \
      throw ::lora::cuda::CudaError(#call, __FILE__, __LINE__, lora_cuda_err_);      \
  } while (0)

#define LORA_CHECK_LAUNCH() LORA_CUDA_CHECK(cudaGetLastError())

#if defined(__CUDACC__)
#define LORA_NOINLINE __noinline__
#define LORA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define LORA_DYN_SMEM(T, name)                         \
  extern __shared__ __align__(16) unsigned char lora_dyn_smem_raw_[]; \
  T* name = reinterpret_cast<T*>(lora_dyn_smem_raw_)
#else
#define LORA_NOINLINE __attribute__((noinline))
#define LORA_LAUNCH(kernel, grid, block, smem, stream, ...)                                              \
  ((void)(stream), ::lora::emu::launch(LORA_EMU_SITE, #kernel, kernel, dim3(grid), dim3(block),        \
                                       static_cast<size_t>(smem), ##__VA_ARGS__))
#define LORA_DYN_SMEM(T, name) T* name = reinterpret_cast<T*>(::lora::emu::dynamic_smem())
#endif
