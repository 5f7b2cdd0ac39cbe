// What the CPU can run, read once with cpuid (and xgetbv for the OS's AVX-512 state support).
// The fast CPU kernels are chosen from this at run time; the scalar reference runs everywhere.
#pragma once
#include <string>

namespace lora {

struct CpuFeatures {
  std::string vendor;
  std::string model;  // brand string
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_vnni = false;
  bool os_avx512 = false;  // XCR0 enables opmask/zmm state
  int logical_cores = 1;
  // Everything the AVX-512 backend needs.
  bool has_avx512_backend() const {
    return os_avx512 && avx512f && avx512bw && avx512vl && avx512dq && avx512_bf16 && avx512_vnni && fma;
  }
};

const CpuFeatures& cpu_features();

}  // namespace lora
