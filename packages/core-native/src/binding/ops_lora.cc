// Bindings of the fused LoRA linear (ops.h LoraFwd / LoraBwd).
//   opLoraForward(x, w, bias|null, a, b, y, xa, scale, dropP, seed, offset, groups, backend?)
//   opLoraBackward(dy, x, w, a, b, xa, dx|null, da|null, db|null, scale, dropP, seed, offset,
//                  groups, accumulate, backend?)
//   opLoraSegments(x, w, bias|null, y, as[], bs[], starts[], lens[], scales[], groups, backend?)
// w [G*N, K], a [G*r, K] f32, b [G*N, r] f32, x [M, K], y/dy [M, G*N], xa [M, G*r] f32; segment i
// of opLoraSegments: rows [starts[i], starts[i] + lens[i]) with as[i] [G*r_i, K], bs[i] [G*N, r_i].
#include <cmath>

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

// Segments are checked here (sorted, disjoint, inside [0, M); each adapter's shapes and dtypes)
// so that no backend sees a bad one.
Napi::Value LoraSegmentsOp(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "loraSegments");
    Tensor& x = a.tensor(0, "x");
    Tensor& wt = a.tensor(1, "w");
    Tensor* bias = a.optional_tensor(2, "bias");
    Tensor& y = a.tensor(3, "y");
    constexpr uint32_t kMaxSegs = 1u << 16;
    const std::vector<Napi::Value> av = a.elements(4, "as", kMaxSegs, "an array of f32 Tensors (each segment's A)");
    const std::vector<Napi::Value> bv = a.elements(5, "bs", kMaxSegs, "an array of f32 Tensors (each segment's B)");
    const std::vector<Napi::Value> sv = a.elements(6, "starts", kMaxSegs, "an array of row indices");
    const std::vector<Napi::Value> lv = a.elements(7, "lens", kMaxSegs, "an array of row counts");
    const std::vector<Napi::Value> cv = a.elements(8, "scales", kMaxSegs, "an array of finite numbers");
    const int64_t G = a.integer_or(9, "groups", 1, 64, 1);
    const size_t n = av.size();
    if (bv.size() != n || sv.size() != n || lv.size() != n || cv.size() != n) {
      throw Error(LORA_ERR_INVALID_ARG, "as, bs, starts, lens and scales must have one entry per segment (got " + std::to_string(n) + ", " +
                                            std::to_string(bv.size()) + ", " + std::to_string(sv.size()) + ", " + std::to_string(lv.size()) + ", " +
                                            std::to_string(cv.size()) + ")", "segments");
    }
    const ops::Weight w = as_weight(wt, "w");
    const MatView xv = matrix_view(x, "x");
    if (xv.cols != w.cols) throw Error(LORA_ERR_SHAPE, "x: last dimension " + std::to_string(xv.cols) + " does not match w's input features " + std::to_string(w.cols), "x");
    if (w.rows % G) throw Error(LORA_ERR_SHAPE, "w: " + std::to_string(w.rows) + " output rows are not divisible by groups=" + std::to_string(G), "w");
    if (w.dtype == DType::BF16P && G > 1 && (w.rows / G) % 64) {
      throw Error(LORA_ERR_SHAPE, "w: a bf16p weight splits into groups only at multiples of 64 rows (" + std::to_string(w.rows / G) + " per group)", "w");
    }
    const int64_t M = xv.rows, K = w.cols, N = w.rows / G;
    std::vector<ops::LoraSegment> segs(n);
    std::vector<Span> ins = {span_of(x, "x"), span_of(wt, "w")};
    if (bias) ins.push_back(span_of(*bias, "bias"));
    int64_t next = 0;  // the first row the next segment may start at
    for (size_t i = 0; i < n; ++i) {
      const std::string at = "[" + std::to_string(i) + "]";
      const std::string an = "as" + at, bn = "bs" + at, sn = "starts" + at, ln = "lens" + at, cn = "scales" + at;
      if (!sv[i].IsNumber() || !lv[i].IsNumber()) throw Error(LORA_ERR_INVALID_ARG, sn + " and " + ln + " must be integers", sn);
      const double sd = sv[i].As<Napi::Number>().DoubleValue(), ld = lv[i].As<Napi::Number>().DoubleValue();
      if (!(sd == static_cast<double>(static_cast<int64_t>(sd))) || !(ld == static_cast<double>(static_cast<int64_t>(ld)))) {
        throw Error(LORA_ERR_INVALID_ARG, sn + " and " + ln + " must be integers", sn);
      }
      const int64_t start = static_cast<int64_t>(sd), len = static_cast<int64_t>(ld);
      if (len < 1 || start < 0 || start > M || len > M - start) {
        throw Error(LORA_ERR_SHAPE, "segment " + std::to_string(i) + ": rows [" + std::to_string(start) + ", " + std::to_string(start + len) +
                                        ") are not a non-empty range inside x's " + std::to_string(M) + " rows", sn);
      }
      if (start < next) {
        throw Error(LORA_ERR_SHAPE, "segment " + std::to_string(i) + " starts at row " + std::to_string(start) + ", before the end of segment " +
                                        std::to_string(i - 1) + " (row " + std::to_string(next) + "): segments must be sorted and disjoint", sn);
      }
      next = start + len;
      if (!cv[i].IsNumber() || !std::isfinite(cv[i].As<Napi::Number>().DoubleValue())) throw Error(LORA_ERR_INVALID_ARG, cn + " must be a finite number", cn);
      const Tensor& ta = a.tensor_value(av[i], an);
      const Tensor& tb = a.tensor_value(bv[i], bn);
      expect_dtype(ta, DType::F32, an.c_str());
      expect_dtype(tb, DType::F32, bn.c_str());
      expect_rank(ta, 2, an.c_str());
      expect_rank(tb, 2, bn.c_str());
      if (ta.shape[0] % G || ta.shape[0] == 0) {
        throw Error(LORA_ERR_SHAPE, an + ": " + std::to_string(ta.shape[0]) + " rows are not a positive multiple of groups=" + std::to_string(G), an);
      }
      const int64_t r = ta.shape[0] / G;
      expect_shape(ta, {G * r, K}, an.c_str());
      if (tb.shape[0] != G * N || tb.shape[1] != r) {
        throw Error(LORA_ERR_SHAPE, bn + ": expected [" + std::to_string(G * N) + ", " + std::to_string(r) + "] (rank " + std::to_string(r) + " from " + an +
                                        "), got [" + std::to_string(tb.shape[0]) + ", " + std::to_string(tb.shape[1]) + "]", bn);
      }
      segs[i] = ops::LoraSegment{start, len, r, f32_data(ta, an.c_str(), G * r * K), f32_data(tb, bn.c_str(), G * N * r),
                                 static_cast<float>(cv[i].As<Napi::Number>().DoubleValue())};
      ins.push_back(span_of(ta, an.c_str()));
      ins.push_back(span_of(tb, bn.c_str()));
    }
    ops::LoraSegments p{M, K, N, G, as_mat(x, "x", M, K), w, bias ? f32_data(*bias, "bias", G * N) : nullptr, as_mut_mat(y, "y", M, G * N),
                        segs.data(), static_cast<int64_t>(n)};
    check_no_alias({span_of(y, "y")}, ins);
    const ops::OpTable& t = pick_backend(a, 10, "lora_segments", {x.dtype, wt.dtype, y.dtype}, {M, K, N, G, static_cast<int64_t>(n)});
    t.lora_segments(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opLoraForward", Napi::Function::New<LoraForward>(env, "opLoraForward"));
  exports.Set("opLoraBackward", Napi::Function::New<LoraBackward>(env, "opLoraBackward"));
  exports.Set("opLoraSegments", Napi::Function::New<LoraSegmentsOp>(env, "opLoraSegments"));
}

const Registrar reg("ops_lora", &Register);

}  // namespace

}  // namespace lora::binding
