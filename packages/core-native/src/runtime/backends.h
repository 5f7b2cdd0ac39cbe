// Which compute backends this binary holds and whether each can run here, with the reason when
// not. `ref` (scalar reference) always runs; `cpu` needs AVX-512 F/BW/VL/DQ + BF16 + VNNI;
// `emu` (CUDA kernels on the CPU emulator) is built with the addon; `cuda` needs nvcc at build
// time and a driver + sm_80+ GPU at run time.
#pragma once
#include <string>
#include <vector>

namespace lora {

struct BackendInfo {
  std::string name;
  bool built = false;
  bool usable = false;
  std::string reason;  // empty when usable
};

std::vector<BackendInfo> list_backends();
bool backend_usable(const std::string& name, std::string* reason);

}  // namespace lora
