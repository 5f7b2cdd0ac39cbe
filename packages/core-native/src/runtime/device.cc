#include "device.h"

#include <cstdlib>

namespace lora {

std::string device_name(Device d) {
  switch (d.kind) {
    case DeviceKind::CPU: return "cpu";
    case DeviceKind::EMU: return "emu";
    case DeviceKind::CUDA: return "cuda:" + std::to_string(d.index);
  }
  return "?";
}

bool parse_device(const std::string& s, Device* out) {
  if (s == "cpu") { *out = {DeviceKind::CPU, 0}; return true; }
  if (s == "emu") { *out = {DeviceKind::EMU, 0}; return true; }
  if (s == "cuda") { *out = {DeviceKind::CUDA, 0}; return true; }
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() <= 7) {
    int idx = 0;
    for (size_t i = 5; i < s.size(); ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      idx = idx * 10 + (s[i] - '0');
    }
    *out = {DeviceKind::CUDA, idx};
    return true;
  }
  return false;
}

}  // namespace lora
