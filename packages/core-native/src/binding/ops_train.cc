// Bindings of the loss, the optimiser and backend introspection.
//   opCrossEntropy(h, w, targets, dh|null, logits|null, lossRows|null, ignoreIndex, gradScale, chunk, backend?)
//       -> { loss, count }
//   opAdamW(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step, gradScale, backend?)
//   opSumSquares(tensors[], backend?) -> number        (Σ x² over all, f64)
//   opSupports(backend, op, dtypes[], sizes[]) -> { ok, reason }
//   opPlacement(backend, [[argName, device], ...]) -> { backend, device }  (the placement rules of
//       every op binding, applied to device names: lets tests check them without a GPU)
//   setNumThreads(n) / getNumThreads() / maxNumThreads()  (n in [1, maxNumThreads()])
#include "../cpu/thread_pool.h"
#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"
#include "tensor_wrap.h"

namespace lora::binding {

namespace {

Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "crossEntropy");
    Tensor& h = a.tensor(0, "h");
    Tensor& wt = a.tensor(1, "w");
    Tensor& tg = a.tensor(2, "targets");
    Tensor* dh = a.optional_tensor(3, "dh");
    Tensor* lg = a.optional_tensor(4, "logits");
    Tensor* lr = a.optional_tensor(5, "lossRows");
    const int64_t ignore = a.integer_or(6, "ignoreIndex", INT32_MIN, INT32_MAX, -100);
    const double gs = a.number_or(7, "gradScale", 1.0);
    const ops::Weight w = as_weight(wt, "w");
    const int64_t V = w.rows, C = w.cols;
    const int64_t chunk = a.integer_or(8, "chunk", 1, 1 << 30, 4096);
    if (w.dtype == DType::BF16P && chunk % 64) a.bad("chunk", "a multiple of 64 with a bf16p weight (it splits at whole 64-row panels)");
    const MatView hv = matrix_view(h, "h");
    if (hv.cols != C) throw Error(LORA_ERR_SHAPE, "h: last dimension " + std::to_string(hv.cols) + " does not match w's width " + std::to_string(C), "h");
    const int64_t M = hv.rows;
    const int32_t* t = i32_data(tg, "targets", M);
    const HostI32 tv(tg, t, M);  // a host copy for a 'cuda' tensor
    for (int64_t m = 0; m < M; ++m) {
      if (tv[m] != ignore && (tv[m] < 0 || tv[m] >= V)) {
        throw Error(LORA_ERR_INVALID_ARG, "targets[" + std::to_string(m) + "] = " + std::to_string(tv[m]) + " is outside [0, " + std::to_string(V) + ") and is not the ignore index " + std::to_string(ignore), "targets");
      }
    }
    double loss = 0;
    int64_t count = 0;
    ops::CrossEntropy p{M, C, V, chunk, static_cast<int32_t>(ignore), static_cast<float>(gs), as_mat(h, "h", M, C), w, t,
                        dh ? f32_data(*dh, "dh", M * C) : nullptr, lg ? f32_data(*lg, "logits", M * V) : nullptr,
                        lr ? f32_data(*lr, "lossRows", M) : nullptr, &loss, &count};
    std::vector<Span> outs;
    if (dh) outs.push_back(span_of(*dh, "dh"));
    if (lg) outs.push_back(span_of(*lg, "logits"));
    if (lr) outs.push_back(span_of(*lr, "lossRows"));
    check_no_alias(outs, {span_of(h, "h"), span_of(wt, "w"), span_of(tg, "targets")});
    const ops::OpTable& tb = pick_backend(a, 9, "cross_entropy", {h.dtype, wt.dtype}, {M, C, V});
    tb.cross_entropy(op_ctx(a, tb), p);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("loss", loss);
    o.Set("count", static_cast<double>(count));
    return o;
  });
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "adamw");
    Tensor& pt = a.tensor(0, "param");
    Tensor& gt = a.tensor(1, "grad");
    Tensor& mt = a.tensor(2, "m");
    Tensor& vt = a.tensor(3, "v");
    const int64_t n = pt.numel();
    ops::AdamW p{n, f32_data(pt, "param", n), f32_data(gt, "grad", n), f32_data(mt, "m", n), f32_data(vt, "v", n),
                 static_cast<float>(a.number(4, "lr")), static_cast<float>(a.number_or(5, "beta1", 0.9)),
                 static_cast<float>(a.number_or(6, "beta2", 0.999)), static_cast<float>(a.number_or(7, "eps", 1e-8)),
                 static_cast<float>(a.number_or(8, "weightDecay", 0.0)), static_cast<float>(a.number_or(10, "gradScale", 1.0)),
                 a.integer(9, "step", 1, int64_t(1) << 52)};
    if (!(p.beta1 >= 0 && p.beta1 < 1)) a.bad("beta1", "in [0, 1)");
    if (!(p.beta2 >= 0 && p.beta2 < 1)) a.bad("beta2", "in [0, 1)");
    if (!(p.eps > 0)) a.bad("eps", "positive");
    check_no_alias({span_of(pt, "param"), span_of(mt, "m"), span_of(vt, "v")}, {span_of(gt, "grad")});
    const ops::OpTable& t = pick_backend(a, 11, "adamw", {pt.dtype}, {n});
    t.adamw(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "sumSquares");
    // The elements are read once (a getter may grow the array or dispose a tensor), then every
    // tensor is checked before the backend is picked, so that the placement check sees all of them.
    const std::vector<Napi::Value> arr = a.elements(0, "tensors", 1u << 24, "an array of f32 Tensors");
    std::vector<ops::SumSquares> parts;
    std::vector<double> sums(arr.size(), 0.0);
    for (size_t i = 0; i < arr.size(); ++i) {
      const std::string name = "tensors[" + std::to_string(i) + "]";
      const Tensor& x = a.tensor_value(arr[i], name);
      parts.push_back(ops::SumSquares{x.numel(), f32_data(x, name.c_str(), x.numel()), &sums[i]});
    }
    const ops::OpTable& t = pick_backend(a, 1, "sum_squares", {DType::F32}, {static_cast<int64_t>(arr.size())});
    double total = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      t.sum_squares(op_ctx(a, t), parts[i]);
      total += sums[i];
    }
    return Napi::Number::New(info.Env(), total);
  });
}

Napi::Value Supports(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "opSupports");
    const std::string name = a.string(0, "backend");
    const std::string op = a.string(1, "op");
    std::vector<DType> dts;
    std::vector<int64_t> sizes;
    for (const Napi::Value& e : a.elements(2, "dtypes", 64, "an array of dtype names")) {
      DType t;
      if (!e.IsString() || !parse_dtype(e.As<Napi::String>().Utf8Value(), &t)) a.bad("dtypes", "an array of dtype names");
      dts.push_back(t);
    }
    if (a.has(3)) sizes = a.shape(3, "sizes");
    Napi::Object o = Napi::Object::New(info.Env());
    std::string reason;
    const ops::OpTable* t = ops::find_backend(name, &reason);
    if (!t) {
      o.Set("ok", false);
      o.Set("reason", reason);
      return o;
    }
    const ops::Support s = t->supports(op, dts, sizes);
    o.Set("ok", s.ok);
    o.Set("reason", s.reason);
    return o;
  });
}

Napi::Value Placement(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "opPlacement");
    const std::string backend = a.string(0, "backend");
    const char* pairs = "an array of [argName, device] pairs";
    std::vector<std::pair<std::string, Device>> list;
    for (const Napi::Value& e : a.elements(1, "tensors", 1024, pairs)) {
      if (!e.IsArray() || e.As<Napi::Array>().Length() != 2) a.bad("tensors", pairs);
      Napi::Array pair = e.As<Napi::Array>();
      const Napi::Value name = pair.Get(0u), dev = pair.Get(1u);  // each read once: getters may run
      Device d;
      if (!name.IsString() || !dev.IsString() || !parse_device(dev.As<Napi::String>().Utf8Value(), &d)) {
        a.bad("tensors", "[argName, device] pairs with a device 'cpu', 'emu', 'cuda' or 'cuda:N'");
      }
      list.emplace_back(name.As<Napi::String>().Utf8Value(), d);
    }
    const binding::Placement p = resolve_placement(backend, list);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("backend", p.backend);
    o.Set("device", device_name(p.device));
    return o;
  });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "setNumThreads");
    ops::cpu_pool().resize(static_cast<int>(a.integer(0, "threads", 1, ops::max_num_threads())));
    return info.Env().Undefined();
  });
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ops::cpu_pool().size());
}

Napi::Value MaxNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ops::max_num_threads());
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opCrossEntropy", Napi::Function::New<CrossEntropy>(env, "opCrossEntropy"));
  exports.Set("opAdamW", Napi::Function::New<AdamW>(env, "opAdamW"));
  exports.Set("opSumSquares", Napi::Function::New<SumSquares>(env, "opSumSquares"));
  exports.Set("opSupports", Napi::Function::New<Supports>(env, "opSupports"));
  exports.Set("opPlacement", Napi::Function::New<Placement>(env, "opPlacement"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New<GetNumThreads>(env, "getNumThreads"));
  exports.Set("maxNumThreads", Napi::Function::New<MaxNumThreads>(env, "maxNumThreads"));
}

const Registrar reg("ops_train", &Register);

}  // namespace

}  // namespace lora::binding
