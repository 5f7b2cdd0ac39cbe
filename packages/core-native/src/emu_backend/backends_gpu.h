// The op tables of the kernels in cuda/kernels: `emu` (CPU emulator, built when cuda/emu is
// present: LORA_HAS_EMU) and `cuda` (nvcc build, LORA_HAS_CUDA; usable only with a GPU).
#pragma once
#include <string>

#include "../ops/ops.h"

namespace lora::ops {
const OpTable& emu_ops();
// The cuda table, or null with the reason (no GPU, no driver, ...).
const OpTable* cuda_ops_table(std::string* reason);
}  // namespace lora::ops
