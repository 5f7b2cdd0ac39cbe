// Where a tensor's bytes live. `emu` is host memory that plays the part of device memory for the
// CUDA emulator backend, with its own allocator so its statistics read like a GPU's.
#pragma once
#include <cstdint>
#include <string>

namespace lora {

enum class DeviceKind : int32_t { CPU = 0, CUDA = 1, EMU = 2 };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  bool is_host_memory() const { return kind != DeviceKind::CUDA; }
};

std::string device_name(Device d);
// Parses "cpu", "emu", "cuda", "cuda:1"; returns false when malformed.
bool parse_device(const std::string& s, Device* out);

}  // namespace lora
