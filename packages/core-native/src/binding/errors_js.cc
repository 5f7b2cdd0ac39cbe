#include "errors_js.h"

namespace lora::binding {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& arg, const std::string& message) {
  Napi::Error err = (code == LORA_ERR_INVALID_ARG || code == LORA_ERR_DTYPE || code == LORA_ERR_SHAPE)
                        ? static_cast<Napi::Error>(Napi::TypeError::New(env, message))
                        : Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  if (!arg.empty()) err.Set("arg", Napi::String::New(env, arg));
  return err;
}

}  // namespace lora::binding
