// Binding of KV-cached attention for generation (ops/decode.h):
//   opAttentionDecode(q, k, v, kCache, vCache, o, past, heads, scale|null, keyMask|null, backend?)
// q/k/v/o [B, Tq, C] f32 (q/k/v may be column slices of one qkv buffer); kCache/vCache [B, S, C]
// contiguous f32 host tensors; past + Tq <= S. Only the host backends implement it.
#include <cmath>

#include "../ops/decode.h"
#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"

namespace lora::binding {

namespace {

Napi::Value AttentionDecode(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "attentionDecode");
    Tensor& q = a.tensor(0, "q");
    Tensor& k = a.tensor(1, "k");
    Tensor& v = a.tensor(2, "v");
    Tensor& kc = a.tensor(3, "kCache");
    Tensor& vc = a.tensor(4, "vCache");
    Tensor& o = a.tensor(5, "o");
    if (a.has(10)) {
      const std::string backend = a.string(10, "backend");
      if (backend == "emu" || backend == "cuda") {
        throw Error(LORA_ERR_UNSUPPORTED, "attentionDecode: the " + backend + " backend has no KV-cached attention kernel yet; generate on 'cpu' or 'ref'", "backend");
      }
      if (backend != "ref" && backend != "cpu" && backend != "auto") a.bad("backend", "'ref', 'cpu' or 'auto'");
    }
    for (Tensor* t : {&q, &k, &v, &kc, &vc, &o}) {
      expect_host(*t, "tensor");
      expect_dtype(*t, DType::F32, "tensor");
    }
    expect_rank(q, 3, "q");
    expect_rank(kc, 3, "kCache");
    const int64_t B = q.shape[0], Tq = q.shape[1], C = q.shape[2], S = kc.shape[1];
    const int64_t H = a.integer(7, "heads", 1, 1 << 16);
    if (C % H) throw Error(LORA_ERR_SHAPE, "heads: " + std::to_string(H) + " does not divide the width " + std::to_string(C), "heads");
    const int64_t past = a.integer(6, "past", 0, S);
    if (past + Tq > S) throw Error(LORA_ERR_SHAPE, "past + new tokens (" + std::to_string(past + Tq) + ") exceed the cache capacity " + std::to_string(S), "past");
    for (auto [t, name] : {std::pair<Tensor*, const char*>{&k, "k"}, {&v, "v"}, {&o, "o"}}) expect_shape(*t, {B, Tq, C}, name);
    expect_shape(vc, kc.shape, "vCache");
    expect_shape(kc, {B, S, C}, "kCache");
    expect_contiguous(kc, "kCache");
    expect_contiguous(vc, "vCache");
    const int32_t* mask = nullptr;
    if (Tensor* m = a.optional_tensor(9, "keyMask")) {
      expect_host(*m, "keyMask");
      mask = i32_data(*m, "keyMask", B * S);
    }
    const float scale = static_cast<float>(a.has(8) ? a.number(8, "scale") : 1.0 / std::sqrt(static_cast<double>(C / H)));
    check_no_alias({span_of(o, "o"), span_of(kc, "kCache"), span_of(vc, "vCache")}, {span_of(q, "q"), span_of(k, "k"), span_of(v, "v")});
    check_no_alias({span_of(kc, "kCache")}, {span_of(vc, "vCache"), span_of(o, "o")});
    ops::AttnDecode p{B, Tq, S, H, C / H, past, scale,
                      q.data_as<const float>(), matrix_view(q, "q").ld, k.data_as<const float>(), matrix_view(k, "k").ld,
                      v.data_as<const float>(), matrix_view(v, "v").ld, kc.data_as<float>(), vc.data_as<float>(), mask,
                      o.data_as<float>(), matrix_view(o, "o").ld};
    ops::attn_decode_ref(p);
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opAttentionDecode", Napi::Function::New<AttentionDecode>(env, "opAttentionDecode"));
}

const Registrar reg("ops_decode", &Register);

}  // namespace

}  // namespace lora::binding
