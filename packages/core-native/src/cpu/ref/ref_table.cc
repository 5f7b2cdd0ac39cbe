// The reference backend's op table: it runs every op on host memory, for every dtype the
// binding accepts, so supports() always says yes.
#include "ref.h"

namespace lora::ops {

namespace {
Support ref_supports(const std::string&, const std::vector<DType>&, const std::vector<int64_t>&) { return {}; }
}  // namespace

const OpTable& ref_ops() {
#define LORA_REF_ENTRY(field, Params, name) &ref::field,
  static const OpTable t = {"ref", &ref_supports, LORA_OP_LIST(LORA_REF_ENTRY)};
#undef LORA_REF_ENTRY
  return t;
}

}  // namespace lora::ops
