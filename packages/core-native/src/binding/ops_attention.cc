// Bindings of causal attention with grouped KV heads and a query offset (ops.h AttnFwd / AttnBwd).
//   opAttention(q, k, v, o, lse, heads, scale|null, kvLens|null, mask|null, backend?, qOffset|null,
//               kCache|null, vCache|null)
//   opAttentionBackward(dout, q, k, v, o|null, lse, dq, dk, dv, heads, scale|null, kvLens|null,
//                       mask|null, backend?, qOffset|null)
//     (o null: the backward recomputes D = rowsum(dO∘O) from q, k, v, lse instead)
//   opAttentionRagged(q, k, v, o, lse, heads, scale|null, starts, lens, pasts, kCaches, vCaches,
//                     backend?)   (serving's continuous batch; ops.h AttnRagged)
//     q, o [M, C], k, v [M, Ckv]: request r's rows are [starts[r], starts[r] + lens[r]); its caches
//     [1, S_r, Ckv] (q's dtype, contiguous) get its new k/v rows at pasts[r] and are attended over;
//     lse [H·M] f32, request r's [H, lens[r]] at starts[r]·H. Each request's rows equal opAttention
//     on them with its caches and qOffset = pasts[r], bit for bit on the same backend.
// q, o, dout, dq: [B, T, C] (C = heads·D); k, v, dk, dv: [B, Tk, Ckv] (Ckv = kvHeads·D, the KV heads
// read from k's width; heads % kvHeads == 0). Query row i sits at position qOffset + i (default
// Tk - T: the queries are the last T of the Tk positions). With kCache/vCache ([B, S, Ckv]
// contiguous, q's dtype), k and v are the T new rows [B, T, Ckv]: the op writes them into cache rows
// [qOffset, qOffset + T) and attends over the caches (Tk = S; qOffset is then required): KV-cached
// decoding. kvLens [B] in [0, Tk] and mask [B, Tk] describe padding keys. q/k/v may be column
// slices of one wider buffer; q, k, v (and caches) all f32 or all bf16, everything else f32.
#include <algorithm>
#include <cmath>
#include <deque>
#include <string>

#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"

namespace lora::binding {

namespace {

struct AttnDims {
  int64_t B, T, H, D, Hkv, Tk, off;
};

// Sizes from q (B, T, C = H·D) and the key tensor (Tk rows, Ckv = Hkv·D columns).
AttnDims attn_dims(const Args& a, const Tensor& q, const Tensor& keys, const char* keys_name, size_t heads_arg, size_t off_arg, bool off_required) {
  expect_rank(q, 3, "q");
  expect_rank(keys, 3, keys_name);
  const int64_t H = a.integer(heads_arg, "heads", 1, 1 << 16);
  const int64_t C = q.shape[2];
  if (C % H) throw Error(LORA_ERR_SHAPE, "heads: " + std::to_string(H) + " does not divide the model width " + std::to_string(C), "heads");
  const int64_t D = C / H, Ckv = keys.shape[2], Tk = keys.shape[1];
  if (keys.shape[0] != q.shape[0]) throw Error(LORA_ERR_SHAPE, std::string(keys_name) + ": batch " + std::to_string(keys.shape[0]) + " != q's batch " + std::to_string(q.shape[0]), keys_name);
  if (Ckv == 0 || Ckv % D || H % (Ckv / D)) {
    throw Error(LORA_ERR_SHAPE, std::string(keys_name) + ": width " + std::to_string(Ckv) + " is not a whole number of KV heads of head dim " + std::to_string(D) +
                " dividing the " + std::to_string(H) + " query heads", keys_name);
  }
  const int64_t T = q.shape[1];
  if (T > Tk) throw Error(LORA_ERR_SHAPE, std::string(keys_name) + ": " + std::to_string(Tk) + " key rows < " + std::to_string(T) + " query rows", keys_name);
  if (off_required && !a.has(off_arg)) a.bad("qOffset", "the number of cached positions before these rows (required with a KV cache)");
  const int64_t off = a.integer_or(off_arg, "qOffset", 0, Tk - T, Tk - T);
  return {q.shape[0], T, H, D, Ckv / D, Tk, off};
}

// An f32 [B, rows, cols] activation (o, dout, dq, dk, dv); returns its row stride.
int64_t f32_rows(const Tensor& t, const char* name, int64_t B, int64_t rows, int64_t cols) {
  expect_dtype(t, DType::F32, name);
  expect_rank(t, 3, name);
  expect_shape(t, {B, rows, cols}, name);
  return matrix_view(t, name).ld;
}

// q, k, v: all f32 or all bf16 (q's dtype; k and v must match it). Returns the row stride.
int64_t qkv_rows(const Tensor& t, const char* name, int64_t B, int64_t rows, int64_t cols, DType dt) {
  if (dt != DType::F32 && dt != DType::BF16)
    throw Error(LORA_ERR_DTYPE, std::string(name) + ": q, k and v must be f32 or bf16, got " + dtype_name(dt), name);
  expect_dtype(t, dt, name);
  expect_rank(t, 3, name);
  expect_shape(t, {B, rows, cols}, name);
  return matrix_view(t, name).ld;
}

void read_padding(const Args& a, size_t i, const AttnDims& d, const int32_t** kv, const int32_t** mask, std::vector<Span>* ins) {
  *kv = nullptr;
  *mask = nullptr;
  if (Tensor* t = a.optional_tensor(i, "kvLens")) {
    *kv = i32_data(*t, "kvLens", d.B);
    const HostI32 lens(*t, *kv, d.B);  // a host copy for a 'cuda' tensor
    for (int64_t b = 0; b < d.B; ++b)
      if (lens[b] < 0 || lens[b] > d.Tk) throw Error(LORA_ERR_INVALID_ARG, "kvLens[" + std::to_string(b) + "] = " + std::to_string(lens[b]) + " is outside [0, " + std::to_string(d.Tk) + "]", "kvLens");
    ins->push_back(span_of(*t, "kvLens"));
  }
  if (Tensor* t = a.optional_tensor(i + 1, "mask")) {
    *mask = i32_data(*t, "mask", d.B * d.Tk);
    ins->push_back(span_of(*t, "mask"));
  }
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
    Tensor* kc = a.optional_tensor(11, "kCache");
    Tensor* vc = a.optional_tensor(12, "vCache");
    if (!kc != !vc) a.bad(kc ? "vCache" : "kCache", "given together with the other cache");
    const AttnDims d = kc ? attn_dims(a, q, *kc, "kCache", 5, 10, true) : attn_dims(a, q, k, "k", 5, 10, false);
    const int64_t C = d.H * d.D, Ckv = d.Hkv * d.D, Tnew = kc ? d.T : d.Tk;
    ops::AttnFwd p{};
    p.B = d.B; p.T = d.T; p.H = d.H; p.D = d.D; p.Hkv = d.Hkv; p.Tk = d.Tk; p.q_offset = d.off;
    p.scale = read_scale(a, 6, d);
    p.qkv_dtype = q.dtype;
    p.ldq = qkv_rows(q, "q", d.B, d.T, C, q.dtype); p.q = q.data();
    p.ldk = qkv_rows(k, "k", d.B, Tnew, Ckv, q.dtype); p.k = k.data();
    p.ldv = qkv_rows(v, "v", d.B, Tnew, Ckv, q.dtype); p.v = v.data();
    p.ldo = f32_rows(o, "o", d.B, d.T, C); p.o = o.data_as<float>();
    p.lse = f32_data(lse, "lse", d.B * d.H * d.T);
    std::vector<Span> ins = {span_of(q, "q"), span_of(k, "k"), span_of(v, "v")};
    read_padding(a, 7, d, &p.kv_len, &p.mask, &ins);
    std::vector<Span> outs = {span_of(o, "o"), span_of(lse, "lse")};
    if (kc) {
      for (auto [t, name] : {std::pair<Tensor*, const char*>{kc, "kCache"}, {vc, "vCache"}}) {
        qkv_rows(*t, name, d.B, d.Tk, Ckv, q.dtype);
        expect_contiguous(*t, name);
        outs.push_back(span_of(*t, name));
      }
      p.k_cache = kc->data();
      p.v_cache = vc->data();
    }
    check_no_alias(outs, ins);
    if (kc) check_no_alias({span_of(*kc, "kCache")}, {span_of(*vc, "vCache"), span_of(o, "o"), span_of(lse, "lse")});
    const ops::OpTable& t = pick_backend(a, 9, "attention", {q.dtype}, {d.B, d.T, d.H, d.D, d.Hkv, d.Tk});
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
    const AttnDims d = attn_dims(a, q, k, "k", 9, 14, false);
    const int64_t C = d.H * d.D, Ckv = d.Hkv * d.D;
    ops::AttnBwd p{};
    p.B = d.B; p.T = d.T; p.H = d.H; p.D = d.D; p.Hkv = d.Hkv; p.Tk = d.Tk; p.q_offset = d.off;
    p.scale = read_scale(a, 10, d);
    p.qkv_dtype = q.dtype;
    p.ldq = qkv_rows(q, "q", d.B, d.T, C, q.dtype); p.q = q.data();
    p.ldk = qkv_rows(k, "k", d.B, d.Tk, Ckv, q.dtype); p.k = k.data();
    p.ldv = qkv_rows(v, "v", d.B, d.Tk, Ckv, q.dtype); p.v = v.data();
    if (o) { p.ldo = f32_rows(*o, "o", d.B, d.T, C); p.o = o->data_as<float>(); } else { p.ldo = 0; p.o = nullptr; }
    p.lddo = f32_rows(dout, "dout", d.B, d.T, C); p.dout = dout.data_as<float>();
    p.lddq = f32_rows(dq, "dq", d.B, d.T, C); p.dq = dq.data_as<float>();
    p.lddk = f32_rows(dk, "dk", d.B, d.Tk, Ckv); p.dk = dk.data_as<float>();
    p.lddv = f32_rows(dv, "dv", d.B, d.Tk, Ckv); p.dv = dv.data_as<float>();
    p.lse = f32_data(lse, "lse", d.B * d.H * d.T);
    std::vector<Span> ins = {span_of(dout, "dout"), span_of(q, "q"), span_of(k, "k"), span_of(v, "v"), span_of(lse, "lse")};
    if (o) ins.push_back(span_of(*o, "o"));
    read_padding(a, 11, d, &p.kv_len, &p.mask, &ins);
    check_no_alias({span_of(dq, "dq"), span_of(dk, "dk"), span_of(dv, "dv")}, ins);
    const ops::OpTable& t = pick_backend(a, 13, "attention_bwd", {q.dtype}, {d.B, d.T, d.H, d.D, d.Hkv, d.Tk});
    t.attn_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

// An element of one of the ragged call's index lists: an integer.
int64_t index_of(const Napi::Value& v, const std::string& name) {
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : std::nan("");
  if (!(std::fabs(d) <= 9007199254740991.0) || d != std::floor(d)) throw Error(LORA_ERR_INVALID_ARG, name + " must be an integer", name);
  return static_cast<int64_t>(d);
}

// The ragged call (serving): request r's queries, new keys and values are rows
// [starts[r], starts[r] + lens[r]) of q, k, v; they attend over its own caches at past pasts[r].
// Requests are checked here (sorted, disjoint, inside q's rows, inside their caches, caches
// distinct and q's dtype) so that no backend sees a bad one; each list is read once.
Napi::Value AttentionRagged(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "attentionRagged");
    Tensor& q = a.tensor(0, "q");
    Tensor& k = a.tensor(1, "k");
    Tensor& v = a.tensor(2, "v");
    Tensor& o = a.tensor(3, "o");
    Tensor& lse = a.tensor(4, "lse");
    const int64_t H = a.integer(5, "heads", 1, 1 << 16);
    constexpr uint32_t kMaxRows = 4096;  // the caches' pairwise overlap check is quadratic
    const std::vector<Napi::Value> sv = a.elements(7, "starts", kMaxRows, "an array of row indices");
    const std::vector<Napi::Value> lv = a.elements(8, "lens", kMaxRows, "an array of row counts");
    const std::vector<Napi::Value> pv = a.elements(9, "pasts", kMaxRows, "an array of cached-position counts");
    const std::vector<Napi::Value> kv = a.elements(10, "kCaches", kMaxRows, "an array of Tensors (each request's key cache)");
    const std::vector<Napi::Value> vv = a.elements(11, "vCaches", kMaxRows, "an array of Tensors (each request's value cache)");
    const size_t n = sv.size();
    if (lv.size() != n || pv.size() != n || kv.size() != n || vv.size() != n) {
      throw Error(LORA_ERR_INVALID_ARG, "starts, lens, pasts, kCaches and vCaches must have one entry per request (got " + std::to_string(n) + ", " +
                                            std::to_string(lv.size()) + ", " + std::to_string(pv.size()) + ", " + std::to_string(kv.size()) + ", " +
                                            std::to_string(vv.size()) + ")", "starts");
    }
    expect_rank(q, 2, "q");
    expect_rank(k, 2, "k");
    const int64_t M = q.shape[0], C = q.shape[1], Ckv = k.shape[1];
    if (C % H) throw Error(LORA_ERR_SHAPE, "heads: " + std::to_string(H) + " does not divide the model width " + std::to_string(C), "heads");
    const int64_t D = C / H;
    if (Ckv == 0 || Ckv % D || H % (Ckv / D)) {
      throw Error(LORA_ERR_SHAPE, "k: width " + std::to_string(Ckv) + " is not a whole number of KV heads of head dim " + std::to_string(D) + " dividing the " +
                                      std::to_string(H) + " query heads", "k");
    }
    ops::AttnRagged p{};
    p.H = H; p.D = D; p.Hkv = Ckv / D;
    p.scale = static_cast<float>(a.has(6) ? a.number(6, "scale") : 1.0 / std::sqrt(static_cast<double>(D)));
    p.qkv_dtype = q.dtype;
    // 2-D [rows, cols] as [1, rows, cols] for the shared row checks.
    auto rows2 = [&](const Tensor& t, const char* name, int64_t cols, bool f32) {
      expect_rank(t, 2, name);
      expect_shape(t, {M, cols}, name);
      if (f32) expect_dtype(t, DType::F32, name);
      else if (q.dtype != DType::F32 && q.dtype != DType::BF16) throw Error(LORA_ERR_DTYPE, std::string(name) + ": q, k and v must be f32 or bf16, got " + dtype_name(q.dtype), name);
      else expect_dtype(t, q.dtype, name);
      return matrix_view(t, name).ld;
    };
    p.ldq = rows2(q, "q", C, false); p.q = q.data();
    p.ldk = rows2(k, "k", Ckv, false); p.k = k.data();
    p.ldv = rows2(v, "v", Ckv, false); p.v = v.data();
    p.ldo = rows2(o, "o", C, true); p.o = o.data_as<float>();
    p.lse = f32_data(lse, "lse", H * M);
    std::vector<ops::AttnRaggedRow> rows(n);
    std::deque<std::string> names;  // the spans' names live as long as the check
    std::vector<Span> outs = {span_of(o, "o"), span_of(lse, "lse")};
    int64_t next = 0, maxT = 0, maxTk = 0;  // next: the first row the next request may start at
    for (size_t r = 0; r < n; ++r) {
      const std::string at = "[" + std::to_string(r) + "]";
      const int64_t start = index_of(sv[r], "starts" + at), len = index_of(lv[r], "lens" + at), past = index_of(pv[r], "pasts" + at);
      if (len < 1 || start < 0 || start > M || len > M - start) {
        throw Error(LORA_ERR_SHAPE, "request " + std::to_string(r) + ": rows [" + std::to_string(start) + ", " + std::to_string(start + len) +
                                        ") are not a non-empty range inside q's " + std::to_string(M) + " rows", "starts" + at);
      }
      if (start < next) {
        throw Error(LORA_ERR_SHAPE, "request " + std::to_string(r) + " starts at row " + std::to_string(start) + ", before the end of request " +
                                        std::to_string(r - 1) + " (row " + std::to_string(next) + "): requests must be sorted and disjoint", "starts" + at);
      }
      next = start + len;
      const std::string& kn = names.emplace_back("kCaches" + at);
      const std::string& vn = names.emplace_back("vCaches" + at);
      const Tensor& kc = a.tensor_value(kv[r], kn);
      const Tensor& vc = a.tensor_value(vv[r], vn);
      for (auto [t, name] : {std::pair<const Tensor*, const char*>{&kc, kn.c_str()}, {&vc, vn.c_str()}}) {
        expect_dtype(*t, q.dtype, name);
        expect_rank(*t, 3, name);
        expect_shape(*t, {1, t->shape[1], Ckv}, name);
        expect_contiguous(*t, name);
      }
      const int64_t S = kc.shape[1];
      expect_shape(vc, {1, S, Ckv}, vn.c_str());
      if (past < 0 || past > S - len) {
        throw Error(LORA_ERR_SHAPE, "request " + std::to_string(r) + ": past " + std::to_string(past) + " + " + std::to_string(len) + " new rows exceed its cache's " +
                                        std::to_string(S) + " positions", "pasts" + at);
      }
      rows[r] = ops::AttnRaggedRow{start, len, S, past, kc.data(), vc.data()};
      outs.push_back(span_of(kc, kn.c_str()));
      outs.push_back(span_of(vc, vn.c_str()));
      maxT = std::max(maxT, len), maxTk = std::max(maxTk, S);
    }
    p.rows = rows.data();
    p.nrows = static_cast<int64_t>(n);
    // Caches are outputs (the new rows are written into them): distinct from each other, o, lse and q/k/v.
    check_no_alias(outs, {span_of(q, "q"), span_of(k, "k"), span_of(v, "v")});
    const ops::OpTable& t = pick_backend(a, 12, "attention_ragged", {q.dtype}, {M, maxT, H, D, p.Hkv, maxTk});
    if (n) t.attn_ragged(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opAttention", Napi::Function::New<Attention>(env, "opAttention"));
  exports.Set("opAttentionRagged", Napi::Function::New<AttentionRagged>(env, "opAttentionRagged"));
  exports.Set("opAttentionBackward", Napi::Function::New<AttentionBackward>(env, "opAttentionBackward"));
}

const Registrar reg("ops_attention", &Register);

}  // namespace

}  // namespace lora::binding
