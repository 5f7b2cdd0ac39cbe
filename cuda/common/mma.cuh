// Tensor-core and async-copy wrappers. Kernels never contain raw asm: they call these.
//
// Under nvcc (device pass, sm_80+) each wrapper is one PTX instruction. Under the emulator each
// wrapper is a warp collective that follows the PTX ISA fragment layouts exactly:
//
//   mma_m16n8k16_bf16(d, a, b, c):  D(16x8, f32) = A(16x16, bf16, row) * B(16x8, bf16, col) + C
//     g = lane >> 2, t = lane & 3; each uint32_t holds two 16-bit elements, lower index in the
//     low half.
//       a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//       a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//       b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//       c/d[0,1] = C[g][2t, 2t+1]  c/d[2,3] = C[g+8][2t, 2t+1]
//   ldmatrix_xN(r, p): N (1, 2, 4) 8x8 matrices of 16-bit elements from shared memory; lane
//     8*i + j passes the address of row j of matrix i (16-byte aligned, 16 contiguous bytes);
//     r[i] of lane l receives M_i[l/4][2(l%4), 2(l%4)+1]; the .trans forms receive
//     M_i[2(l%4), 2(l%4)+1][l/4]. Lanes that supply no address still take part.
//   cp_async_16(dst_smem, src_gmem): 16-byte global->shared copy (cp.async.cg);
//   cp_async_16_zfill(dst, src, n): copies n (0..16) bytes and zero-fills the rest;
//   cp_async_commit(); cp_async_wait<N>(): wait until at most N committed groups are pending;
//   cp_async_wait_all(). The emulator performs the copies at the wait, so reading the
//   destination before waiting shows the stale (poisoned) contents, as a race would.
#pragma once

#include "cuda_compat.cuh"

namespace lora::cuda {

#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "cuda/common/mma.cuh needs sm_80 or newer (mma.m16n8k16 bf16, ldmatrix, cp.async)"
#endif
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

// ---------------------------------------------------------------------------
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// ---------------------------------------------------------------------------
#if defined(__CUDACC__)
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}
__device__ __forceinline__ void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                 const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}
#else
inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4],
                              ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::warp_mma_m16n8k16_bf16(s, d, a, b, c);
}
inline void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4],
                             ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::warp_mma_m16n8k16_f16(s, d, a, b, c);
}
#endif

// ---------------------------------------------------------------------------
// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{,.trans}.shared.b16
// ---------------------------------------------------------------------------
#if defined(__CUDACC__)
__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
#else
inline void ldmatrix_x1(uint32_t (&r)[1], const void* p, ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::warp_ldmatrix(s, 1, false, p, r);
}
inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void* p, ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::warp_ldmatrix(s, 1, true, p, r);
}
inline void ldmatrix_x2(uint32_t (&r)[2], const void* p, ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::warp_ldmatrix(s, 2, false, p, r);
}
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* p, ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::warp_ldmatrix(s, 2, true, p, r);
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* p, ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::warp_ldmatrix(s, 4, false, p, r);
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p, ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::warp_ldmatrix(s, 4, true, p, r);
}
#endif

// ---------------------------------------------------------------------------
// cp.async (global -> shared, 16 bytes, L2 only) and its groups
// ---------------------------------------------------------------------------
#if defined(__CUDACC__)
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(smem_dst)), "l"(gmem_src) : "memory");
}
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem_dst)), "l"(gmem_src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
#else
inline void cp_async_16(void* smem_dst, const void* gmem_src, ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::cp_async(s, smem_dst, gmem_src, 16, 16);
}
inline void cp_async_16_zfill(void* smem_dst, const void* gmem_src, int src_bytes,
                              ::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::cp_async(s, smem_dst, gmem_src, 16, src_bytes);
}
inline void cp_async_commit(::lora::emu::Site s = LORA_EMU_CALLER) { ::lora::emu::cp_async_commit(s); }
template <int N>
inline void cp_async_wait(::lora::emu::Site s = LORA_EMU_CALLER) {
  static_assert(N >= 0, "cp_async_wait<N>: N must be >= 0");
  ::lora::emu::cp_async_wait(s, N);
}
inline void cp_async_wait_all(::lora::emu::Site s = LORA_EMU_CALLER) {
  ::lora::emu::cp_async_commit(s);
  ::lora::emu::cp_async_wait(s, 0);
}
#endif

// Pack two floats into a bf16x2 register (lower index in the low half), as mma fragments expect.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#if defined(__CUDACC__)
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
#else
  return static_cast<uint32_t>(::lora::emu::f32_to_bf16_bits(lo)) |
         (static_cast<uint32_t>(::lora::emu::f32_to_bf16_bits(hi)) << 16);
#endif
}

}  // namespace lora::cuda
