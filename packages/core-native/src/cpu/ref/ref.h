// The scalar reference backend: the ground truth every other backend is tested against.
#pragma once
#include "../../ops/ops.h"

namespace lora::ops::ref {

LORA_OP_LIST(LORA_OP_DECLARE)

}  // namespace lora::ops::ref
