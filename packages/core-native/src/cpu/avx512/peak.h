// Peak-throughput loops (benchmarks only). Each iteration issues 24 zmm instructions of the kind:
// vdpbf16ps = 64 flop, vfmadd231ps = 32 flop, vpdpbusd = 128 int ops.
#pragma once
#include <cstdint>

namespace lora::ops::cpu {

enum class PeakKind { BF16, F32, INT8 };
// Returns a checksum so the loop is not optimised away.
double peak_loop(PeakKind kind, int64_t iters);

}  // namespace lora::ops::cpu
