// The cpu backend's op table (AVX-512 kernels in avx512/, threads from thread_pool.h).
#include "../ops/ops.h"
#include "avx512/cpu_kernels.h"

namespace lora::ops {

namespace {
Support cpu_supports(const std::string& op, const std::vector<DType>& dtypes, const std::vector<int64_t>&) {
  return cpu::supports(op, dtypes);
}
}  // namespace

const OpTable& cpu_ops() {
#define LORA_CPU_ENTRY(field, Params, name) &cpu::field,
  static const OpTable t = {"cpu", &cpu_supports, LORA_OP_LIST(LORA_CPU_ENTRY)};
#undef LORA_CPU_ENTRY
  return t;
}

}  // namespace lora::ops
