// The addon's entry point: the Tensor class, then every registered binding family.
#include <napi.h>

#include <vector>

#include "registry.h"
#include "tensor_wrap.h"

namespace lora::binding {

namespace {
struct Entry { const char* name; RegisterFn fn; };
std::vector<Entry>& entries() {
  static std::vector<Entry> e;
  return e;
}
}  // namespace

Registrar::Registrar(const char* name, RegisterFn fn) { entries().push_back({name, fn}); }

void register_all(Napi::Env env, Napi::Object exports) {
  for (const Entry& e : entries()) e.fn(env, exports);
}

}  // namespace lora::binding

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  lora::binding::TensorWrap::Init(env, exports);
  lora::binding::register_all(env, exports);
  return exports;
}

NODE_API_MODULE(lora_native, Init)
