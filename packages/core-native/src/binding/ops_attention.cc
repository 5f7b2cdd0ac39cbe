// Bindings of causal multi-head attention (ops.h AttnFwd / AttnBwd).
//   opAttention(q, k, v, o, lse, heads, scale|null, kvLens|null, mask|null, backend?)
//   opAttentionBackward(dout, q, k, v, o|null, lse, dq, dk, dv, heads, scale|null, kvLens|null, mask|null, backend?)
//     (o null: the backward recomputes D = rowsum(dO∘O) from q, k, v, lse instead)
// q, k, v, o: [B, T, C], each may be a column slice (narrow) of a wider [B, T, n*C] buffer; q, k
// and v all f32 or all bf16, everything else f32.
#include <cmath>

#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"

namespace lora::binding {

namespace {

struct AttnDims {
  int64_t B, T, H, D;
};

AttnDims attn_dims(const Args& a, const Tensor& q, size_t heads_arg) {
  expect_rank(q, 3, "q");
  const int64_t H = a.integer(heads_arg, "heads", 1, 1 << 16);
  const int64_t C = q.shape[2];
  if (C % H) throw Error(LORA_ERR_SHAPE, "heads: " + std::to_string(H) + " does not divide the model width " + std::to_string(C), "heads");
  return {q.shape[0], q.shape[1], H, C / H};
}

int64_t f32_rows(const Tensor& t, const char* name, const AttnDims& d) {
  expect_dtype(t, DType::F32, name);
  expect_rank(t, 3, name);
  expect_shape(t, {d.B, d.T, d.H * d.D}, name);
  return matrix_view(t, name).ld;
}

void read_padding(const Args& a, size_t i, const AttnDims& d, const int32_t** kv, const int32_t** mask, std::vector<Span>* ins) {
  *kv = nullptr;
  *mask = nullptr;
  if (Tensor* t = a.optional_tensor(i, "kvLens")) {
    *kv = i32_data(*t, "kvLens", d.B);
    const HostI32 lens(*t, *kv, d.B);  // a host copy for a 'cuda' tensor
    for (int64_t b = 0; b < d.B; ++b)
      if (lens[b] < 0 || lens[b] > d.T) throw Error(LORA_ERR_INVALID_ARG, "kvLens[" + std::to_string(b) + "] = " + std::to_string(lens[b]) + " is outside [0, " + std::to_string(d.T) + "]", "kvLens");
    ins->push_back(span_of(*t, "kvLens"));
  }
  if (Tensor* t = a.optional_tensor(i + 1, "mask")) {
    *mask = i32_data(*t, "mask", d.B * d.T);
    ins->push_back(span_of(*t, "mask"));
  }
}

// q, k, v: all f32 or all bf16 (q's dtype; k and v must match it). Returns the row stride.
int64_t qkv_rows(const Tensor& t, const char* name, const AttnDims& d, DType dt) {
  if (dt != DType::F32 && dt != DType::BF16)
    throw Error(LORA_ERR_DTYPE, std::string(name) + ": q, k and v must be f32 or bf16, got " + dtype_name(dt), name);
  expect_dtype(t, dt, name);
  expect_rank(t, 3, name);
  expect_shape(t, {d.B, d.T, d.H * d.D}, name);
  return matrix_view(t, name).ld;
}

float read_scale(const Args& a, size_t i, const AttnDims& d) {
  return static_cast<float>(a.has(i) ? a.number(i, "scale") : 1.0 / std::sqrt(static_cast<double>(d.D)));
}

Napi::Value Attention(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "attention");
    Tensor& q = a.tensor(0, "q");
    Tensor& k = a.tensor(1, "k");
    Tensor& v = a.tensor(2, "v");
    Tensor& o = a.tensor(3, "o");
    Tensor& lse = a.tensor(4, "lse");
    const AttnDims d = attn_dims(a, q, 5);
    ops::AttnFwd p{};
    p.B = d.B; p.T = d.T; p.H = d.H; p.D = d.D;
    p.scale = read_scale(a, 6, d);
    p.qkv_dtype = q.dtype;
    p.ldq = qkv_rows(q, "q", d, q.dtype); p.q = q.data();
    p.ldk = qkv_rows(k, "k", d, q.dtype); p.k = k.data();
    p.ldv = qkv_rows(v, "v", d, q.dtype); p.v = v.data();
    p.ldo = f32_rows(o, "o", d); p.o = o.data_as<float>();
    p.lse = f32_data(lse, "lse", d.B * d.H * d.T);
    std::vector<Span> ins = {span_of(q, "q"), span_of(k, "k"), span_of(v, "v")};
    read_padding(a, 7, d, &p.kv_len, &p.mask, &ins);
    check_no_alias({span_of(o, "o"), span_of(lse, "lse")}, ins);
    const ops::OpTable& t = pick_backend(a, 9, "attention", {q.dtype}, {d.B, d.T, d.H, d.D});
    t.attn_fwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "attentionBackward");
    Tensor& dout = a.tensor(0, "dout");
    Tensor& q = a.tensor(1, "q");
    Tensor& k = a.tensor(2, "k");
    Tensor& v = a.tensor(3, "v");
    Tensor* o = a.optional_tensor(4, "o");
    Tensor& lse = a.tensor(5, "lse");
    Tensor& dq = a.tensor(6, "dq");
    Tensor& dk = a.tensor(7, "dk");
    Tensor& dv = a.tensor(8, "dv");
    const AttnDims d = attn_dims(a, q, 9);
    ops::AttnBwd p{};
    p.B = d.B; p.T = d.T; p.H = d.H; p.D = d.D;
    p.scale = read_scale(a, 10, d);
    p.qkv_dtype = q.dtype;
    p.ldq = qkv_rows(q, "q", d, q.dtype); p.q = q.data();
    p.ldk = qkv_rows(k, "k", d, q.dtype); p.k = k.data();
    p.ldv = qkv_rows(v, "v", d, q.dtype); p.v = v.data();
    if (o) { p.ldo = f32_rows(*o, "o", d); p.o = o->data_as<float>(); } else { p.ldo = 0; p.o = nullptr; }
    p.lddo = f32_rows(dout, "dout", d); p.dout = dout.data_as<float>();
    p.lddq = f32_rows(dq, "dq", d); p.dq = dq.data_as<float>();
    p.lddk = f32_rows(dk, "dk", d); p.dk = dk.data_as<float>();
    p.lddv = f32_rows(dv, "dv", d); p.dv = dv.data_as<float>();
    p.lse = f32_data(lse, "lse", d.B * d.H * d.T);
    std::vector<Span> ins = {span_of(dout, "dout"), span_of(q, "q"), span_of(k, "k"), span_of(v, "v"), span_of(lse, "lse")};
    if (o) ins.push_back(span_of(*o, "o"));
    read_padding(a, 11, d, &p.kv_len, &p.mask, &ins);
    check_no_alias({span_of(dq, "dq"), span_of(dk, "dk"), span_of(dv, "dv")}, ins);
    const ops::OpTable& t = pick_backend(a, 13, "attention_bwd", {q.dtype}, {d.B, d.T, d.H, d.D});
    t.attn_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opAttention", Napi::Function::New<Attention>(env, "opAttention"));
  exports.Set("opAttentionBackward", Napi::Function::New<AttentionBackward>(env, "opAttentionBackward"));
}

const Registrar reg("ops_attention", &Register);

}  // namespace

}  // namespace lora::binding
