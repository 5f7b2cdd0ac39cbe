// The one error type of the native layer. Every failure becomes a lora::Error with a stable code;
// the binding turns it into a JS Error with `code` (and `arg` when an argument was at fault).
// Nothing in the addon calls exit or abort.
#pragma once
#include <stdexcept>
#include <string>

namespace lora {

// Stable codes (also exported to JS as constants).
#define LORA_ERR_INVALID_ARG "ERR_LORA_INVALID_ARG"
#define LORA_ERR_DTYPE "ERR_LORA_DTYPE"
#define LORA_ERR_SHAPE "ERR_LORA_SHAPE"
#define LORA_ERR_DEVICE "ERR_LORA_DEVICE"
#define LORA_ERR_DISPOSED "ERR_LORA_DISPOSED"
#define LORA_ERR_OOM "ERR_LORA_OOM"
#define LORA_ERR_UNSUPPORTED "ERR_LORA_UNSUPPORTED"
#define LORA_ERR_CUDA "ERR_LORA_CUDA"
#define LORA_ERR_EMU "ERR_LORA_EMU"
#define LORA_ERR_INTERNAL "ERR_LORA_INTERNAL"

class Error : public std::runtime_error {
 public:
  Error(std::string code, std::string message, std::string arg = "")
      : std::runtime_error(std::move(message)), code_(std::move(code)), arg_(std::move(arg)) {}
  const std::string& code() const { return code_; }
  const std::string& arg() const { return arg_; }

 private:
  std::string code_;
  std::string arg_;
};

[[noreturn]] inline void fail(const char* code, const std::string& arg, const std::string& what) {
  throw Error(code, arg.empty() ? what : arg + ": " + what, arg);
}

}  // namespace lora
