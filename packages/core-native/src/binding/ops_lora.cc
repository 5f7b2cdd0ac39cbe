// Bindings of the fused LoRA linear (ops.h LoraFwd / LoraBwd).
//   opLoraForward(x, w, bias|null, a, b, y, xa, scale, dropP, seed, offset, groups, backend?)
//   opLoraBackward(dy, x, w, a, b, xa, dx|null, da|null, db|null, scale, dropP, seed, offset,
//                  groups, accumulate, backend?)
// w [G*N, K], a [G*r, K] f32, b [G*N, r] f32, x [M, K], y/dy [M, G*N], xa [M, G*r] f32.
#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"

namespace lora::binding {

namespace {

struct LoraShapes {
  int64_t M, K, N, r, G;
};

LoraShapes lora_shapes(const Args& args, const Tensor& x, const ops::Weight& w, const Tensor& a, const Tensor& b, int64_t G) {
  const MatView xv = matrix_view(x, "x");
  if (xv.cols != w.cols) throw Error(LORA_ERR_SHAPE, "x: last dimension " + std::to_string(xv.cols) + " does not match w's input features " + std::to_string(w.cols), "x");
  if (w.rows % G) throw Error(LORA_ERR_SHAPE, "w: " + std::to_string(w.rows) + " output rows are not divisible by groups=" + std::to_string(G), "w");
  if (w.dtype == DType::BF16P && G > 1 && (w.rows / G) % 64) {
    throw Error(LORA_ERR_SHAPE, "w: a bf16p weight splits into groups only at multiples of 64 rows (" + std::to_string(w.rows / G) + " per group)", "w");
  }
  expect_dtype(a, DType::F32, "a");
  expect_dtype(b, DType::F32, "b");
  expect_rank(a, 2, "a");
  expect_rank(b, 2, "b");
  if (a.shape[0] % G) throw Error(LORA_ERR_SHAPE, "a: " + std::to_string(a.shape[0]) + " rows are not divisible by groups=" + std::to_string(G), "a");
  LoraShapes s{xv.rows, w.cols, w.rows / G, a.shape[0] / G, G};
  if (s.r < 1) throw Error(LORA_ERR_SHAPE, "a: rank must be at least 1", "a");
  expect_shape(a, {s.G * s.r, s.K}, "a");
  expect_shape(b, {s.G * s.N, s.r}, "b");
  f32_data(a, "a", s.G * s.r * s.K);
  f32_data(b, "b", s.G * s.N * s.r);
  return s;
}

Napi::Value LoraForward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "loraForward");
    Tensor& x = a.tensor(0, "x");
    Tensor& wt = a.tensor(1, "w");
    Tensor* bias = a.optional_tensor(2, "bias");
    Tensor& at = a.tensor(3, "a");
    Tensor& bt = a.tensor(4, "b");
    Tensor& y = a.tensor(5, "y");
    Tensor& xa = a.tensor(6, "xa");
    const double scale = a.number(7, "scale");
    const ops::Dropout d = read_dropout(a, 8);
    const int64_t G = a.integer_or(11, "groups", 1, 64, 1);
    const ops::Weight w = as_weight(wt, "w");
    const LoraShapes s = lora_shapes(a, x, w, at, bt, G);
    ops::LoraFwd p{s.M, s.K, s.N, s.r, s.G, as_mat(x, "x", s.M, s.K), w,
                   bias ? f32_data(*bias, "bias", s.G * s.N) : nullptr, at.data_as<float>(), bt.data_as<float>(),
                   static_cast<float>(scale), d, as_mut_mat(y, "y", s.M, s.G * s.N), f32_data(xa, "xa", s.M * s.G * s.r)};
    std::vector<Span> ins = {span_of(x, "x"), span_of(wt, "w"), span_of(at, "a"), span_of(bt, "b")};
    if (bias) ins.push_back(span_of(*bias, "bias"));
    check_no_alias({span_of(y, "y"), span_of(xa, "xa")}, ins);
    const ops::OpTable& t = pick_backend(a, 12, "lora_fwd", {x.dtype, wt.dtype, y.dtype}, {s.M, s.K, s.N, s.r, s.G});
    t.lora_fwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value LoraBackward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "loraBackward");
    Tensor& dy = a.tensor(0, "dy");
    Tensor& x = a.tensor(1, "x");
    Tensor& wt = a.tensor(2, "w");
    Tensor& at = a.tensor(3, "a");
    Tensor& bt = a.tensor(4, "b");
    Tensor& xa = a.tensor(5, "xa");
    Tensor* dx = a.optional_tensor(6, "dx");
    Tensor* da = a.optional_tensor(7, "da");
    Tensor* db = a.optional_tensor(8, "db");
    const double scale = a.number(9, "scale");
    const ops::Dropout d = read_dropout(a, 10);
    const int64_t G = a.integer_or(13, "groups", 1, 64, 1);
    const bool acc = a.boolean_or(14, "accumulate", false);
    const ops::Weight w = as_weight(wt, "w");
    const LoraShapes s = lora_shapes(a, x, w, at, bt, G);
    ops::LoraBwd p{s.M, s.K, s.N, s.r, s.G, as_mat(dy, "dy", s.M, s.G * s.N), as_mat(x, "x", s.M, s.K), w,
                   at.data_as<float>(), bt.data_as<float>(), f32_data(xa, "xa", s.M * s.G * s.r), static_cast<float>(scale), d,
                   dx ? as_mut_mat(*dx, "dx", s.M, s.K) : ops::MutMat{}, acc,
                   da ? f32_data(*da, "da", s.G * s.r * s.K) : nullptr, db ? f32_data(*db, "db", s.G * s.N * s.r) : nullptr};
    std::vector<Span> outs;
    if (dx) outs.push_back(span_of(*dx, "dx"));
    if (da) outs.push_back(span_of(*da, "da"));
    if (db) outs.push_back(span_of(*db, "db"));
    check_no_alias(outs, {span_of(dy, "dy"), span_of(x, "x"), span_of(wt, "w"), span_of(at, "a"), span_of(bt, "b"), span_of(xa, "xa")});
    const ops::OpTable& t = pick_backend(a, 15, "lora_bwd", {dy.dtype, wt.dtype, x.dtype}, {s.M, s.K, s.N, s.r, s.G});
    t.lora_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opLoraForward", Napi::Function::New<LoraForward>(env, "opLoraForward"));
  exports.Set("opLoraBackward", Napi::Function::New<LoraBackward>(env, "opLoraBackward"));
}

const Registrar reg("ops_lora", &Register);

}  // namespace

}  // namespace lora::binding
