// Turns native failures into JS errors with a stable `code` (and `arg`), at the binding boundary.
#pragma once
#include <napi.h>

#include <new>
#include <string>

#include "../runtime/errors.h"

namespace lora::binding {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& arg, const std::string& message);

// Runs a binding body; every C++ exception leaves as a JS exception, never as a crash.
template <typename F>
Napi::Value guard(const Napi::CallbackInfo& info, F&& body) {
  Napi::Env env = info.Env();
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const lora::Error& e) {
    throw make_error(env, e.code(), e.arg(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, LORA_ERR_OOM, "", "out of host memory");
  } catch (const std::exception& e) {
    throw make_error(env, LORA_ERR_INTERNAL, "", std::string("internal error: ") + e.what());
  }
}

}  // namespace lora::binding
