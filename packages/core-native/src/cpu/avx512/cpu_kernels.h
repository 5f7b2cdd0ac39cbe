// The cpu backend: AVX-512 (F/BW/VL/DQ + BF16 + VNNI) kernels, multi-threaded with cpu_pool().
// Only reachable when cpu_features().has_avx512_backend() (see find_backend).
#pragma once
#include "../../ops/ops.h"

namespace lora::ops::cpu {

Support supports(const std::string& op, const std::vector<DType>& dtypes);

LORA_OP_LIST(LORA_OP_DECLARE)

}  // namespace lora::ops::cpu
