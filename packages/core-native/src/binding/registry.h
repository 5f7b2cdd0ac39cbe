// Binding files register their exports here with a static Registrar, so that adding a family of
// ops means adding a file, not editing the module's init.
#pragma once
#include <napi.h>

namespace lora::binding {

using RegisterFn = void (*)(Napi::Env env, Napi::Object exports);

struct Registrar {
  Registrar(const char* name, RegisterFn fn);
};

void register_all(Napi::Env env, Napi::Object exports);

}  // namespace lora::binding
