// The earlier KV-cached attention binding, kept for the SDK's generate until it calls opAttention
// with a cache itself; it is now that call (the attention op with a query offset, every backend):
//   opAttentionDecode(q, k, v, kCache, vCache, o, past, heads, scale|null, keyMask|null, backend?)
// q/k/v/o [B, Tq, C] (q/k/v may be column slices of one qkv buffer); kCache/vCache [B, S, C]
// contiguous; past + Tq <= S; keyMask [B, S] (0 = padding key). lse is scratch here.
#include <cmath>

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
    expect_rank(q, 3, "q");
    expect_rank(kc, 3, "kCache");
    const int64_t B = q.shape[0], Tq = q.shape[1], C = q.shape[2], S = kc.shape[1];
    const int64_t H = a.integer(7, "heads", 1, 1 << 16);
    if (C % H) throw Error(LORA_ERR_SHAPE, "heads: " + std::to_string(H) + " does not divide the width " + std::to_string(C), "heads");
    const int64_t past = a.integer(6, "past", 0, S);
    if (past + Tq > S) throw Error(LORA_ERR_SHAPE, "past + new tokens (" + std::to_string(past + Tq) + ") exceed the cache capacity " + std::to_string(S), "past");
    expect_dtype(q, DType::F32, "q");
    for (auto [t, name] : {std::pair<Tensor*, const char*>{&k, "k"}, {&v, "v"}, {&o, "o"}}) {
      expect_dtype(*t, DType::F32, name);
      expect_rank(*t, 3, name);
      expect_shape(*t, {B, Tq, C}, name);
    }
    for (auto [t, name] : {std::pair<Tensor*, const char*>{&kc, "kCache"}, {&vc, "vCache"}}) {
      expect_dtype(*t, DType::F32, name);
      expect_rank(*t, 3, name);
      expect_shape(*t, {B, S, C}, name);
      expect_contiguous(*t, name);
    }
    ops::AttnFwd p{};
    p.B = B; p.T = Tq; p.H = H; p.D = C / H; p.Hkv = H; p.Tk = S; p.q_offset = past;
    p.scale = static_cast<float>(a.has(8) ? a.number(8, "scale") : 1.0 / std::sqrt(static_cast<double>(C / H)));
    p.q = q.data(); p.ldq = matrix_view(q, "q").ld;
    p.k = k.data(); p.ldk = matrix_view(k, "k").ld;
    p.v = v.data(); p.ldv = matrix_view(v, "v").ld;
    p.o = o.data_as<float>(); p.ldo = matrix_view(o, "o").ld;
    p.k_cache = kc.data(); p.v_cache = vc.data();
    std::vector<Span> ins = {span_of(q, "q"), span_of(k, "k"), span_of(v, "v")};
    if (Tensor* m = a.optional_tensor(9, "keyMask")) {
      p.mask = i32_data(*m, "keyMask", B * S);
      ins.push_back(span_of(*m, "keyMask"));
    }
    check_no_alias({span_of(o, "o"), span_of(kc, "kCache"), span_of(vc, "vCache")}, ins);
    check_no_alias({span_of(kc, "kCache")}, {span_of(vc, "vCache"), span_of(o, "o")});
    const ops::OpTable& t = pick_backend(a, 10, "attention", {DType::F32}, {B, Tq, H, C / H, H, S});
    // lse [B, H, Tq] is the forward's cache for a backward; decoding has none, so it lives here.
    Tensor lse = Tensor::empty(DType::F32, {B, H, Tq}, a.op_device());
    p.lse = lse.data_as<float>();
    t.attn_fwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opAttentionDecode", Napi::Function::New<AttentionDecode>(env, "opAttentionDecode"));
}

const Registrar reg("ops_decode", &Register);

}  // namespace

}  // namespace lora::binding
