// Bindings of the Llama-shaped block's ops (ops.h RmsNormFwd / RmsNormBwd / Rope / SwiGlu / SwiGluBwd).
//   opRmsNorm(x, w|null, y, rstd, eps, width|null, backend?)
//   opRmsNormBackward(dy, x, w|null, rstd, dx, dw|null, width|null, backend?)
//     x [..., N] f32 rows (a column slice of a wider buffer works); the norm runs over groups of
//     `width` (= w's length when w is given, else N) within each row: width = head_dim over a q or k
//     slice is QK-norm. rstd [rows · N/width]. y may be x (in place). dw [width] accumulates.
//   opRope(x, y, positions, invFreq, heads, inverse, backend?)
//     x, y [..., heads·D] f32 rows (y may be x); positions i32 [rows]; invFreq f32 [D/2].
//   opSwiGlu(gate, up, y, backend?)   opSwiGluBackward(gate, up, dy, dgate, dup, backend?)
//     [..., F] rows each (gate/up may be column slices of one gate_up buffer): gate and up both f32
//     or both bf16 (a bf16 linear's output, read as is), y, dy, dgate, dup f32.
#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"

namespace lora::binding {

namespace {

// An f32 row-major matrix of rows x cols (leading dims flattened); returns its row stride.
int64_t f32_rows(const Tensor& t, const char* name, int64_t rows, int64_t cols) {
  expect_dtype(t, DType::F32, name);
  const MatView v = matrix_view(t, name);
  if (v.rows != rows || v.cols != cols) {
    throw Error(LORA_ERR_SHAPE, std::string(name) + ": expected " + std::to_string(rows) + " rows x " + std::to_string(cols) + " columns, got " +
                std::to_string(v.rows) + " x " + std::to_string(v.cols), name);
  }
  return v.ld;
}

// The normalised width: w's length, else the `width` argument, else the whole row; it must divide
// the row.
int64_t norm_width(const Args& a, size_t i, const Tensor* w, int64_t N) {
  int64_t C = N;
  if (w) {
    expect_rank(*w, 1, "w");
    C = w->shape[0];
    if (a.has(i) && a.integer(i, "width", 1, N) != C) a.bad("width", "w's length " + std::to_string(C) + " (or null)");
  } else if (a.has(i)) {
    C = a.integer(i, "width", 1, N);
  }
  if (C == 0 || N % C) throw Error(LORA_ERR_SHAPE, "width " + std::to_string(C) + " does not divide the row length " + std::to_string(N), w ? "w" : "width");
  return C;
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "rmsNorm");
    Tensor& x = a.tensor(0, "x");
    Tensor* w = a.optional_tensor(1, "w");
    Tensor& y = a.tensor(2, "y");
    Tensor& rstd = a.tensor(3, "rstd");
    const double eps = a.number_or(4, "eps", 1e-6);
    if (!(eps > 0)) a.bad("eps", "a positive number");
    expect_dtype(x, DType::F32, "x");
    const MatView v = matrix_view(x, "x");
    const int64_t C = norm_width(a, 5, w, v.cols), G = v.cols / C;
    ops::RmsNormFwd p{v.rows, G, C, static_cast<float>(eps), x.data_as<float>(), v.ld, w ? f32_data(*w, "w", C) : nullptr,
                      y.data_as<float>(), f32_rows(y, "y", v.rows, v.cols), f32_data(rstd, "rstd", v.rows * G)};
    std::vector<Span> ins = {span_of(x, "x")};
    if (w) ins.push_back(span_of(*w, "w"));
    check_no_alias({span_of(y, "y"), span_of(rstd, "rstd")}, ins, {{"y", "x"}});
    const ops::OpTable& t = pick_backend(a, 6, "rmsnorm", {x.dtype}, {v.rows, G, C});
    t.rmsnorm_fwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value RmsNormBackward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "rmsNormBackward");
    Tensor& dy = a.tensor(0, "dy");
    Tensor& x = a.tensor(1, "x");
    Tensor* w = a.optional_tensor(2, "w");
    Tensor& rstd = a.tensor(3, "rstd");
    Tensor& dx = a.tensor(4, "dx");
    Tensor* dw = a.optional_tensor(5, "dw");
    expect_dtype(x, DType::F32, "x");
    const MatView v = matrix_view(x, "x");
    const int64_t M = v.rows, N = v.cols, C = norm_width(a, 6, w, N), G = N / C;
    ops::RmsNormBwd p{M, G, C, dy.data_as<float>(), f32_rows(dy, "dy", M, N), x.data_as<float>(), v.ld, w ? f32_data(*w, "w", C) : nullptr,
                      f32_data(rstd, "rstd", M * G), dx.data_as<float>(), f32_rows(dx, "dx", M, N), dw ? f32_data(*dw, "dw", C) : nullptr};
    std::vector<Span> ins = {span_of(dy, "dy"), span_of(x, "x"), span_of(rstd, "rstd")};
    if (w) ins.push_back(span_of(*w, "w"));
    std::vector<Span> outs = {span_of(dx, "dx")};
    if (dw) outs.push_back(span_of(*dw, "dw"));
    check_no_alias(outs, ins);
    const ops::OpTable& t = pick_backend(a, 7, "rmsnorm_bwd", {x.dtype}, {M, G, C});
    t.rmsnorm_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value Rope(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "rope");
    Tensor& x = a.tensor(0, "x");
    Tensor& y = a.tensor(1, "y");
    Tensor& pos = a.tensor(2, "positions");
    Tensor& inv = a.tensor(3, "invFreq");
    const int64_t H = a.integer(4, "heads", 1, 1 << 16);
    const bool inverse = a.boolean_or(5, "inverse", false);
    expect_dtype(x, DType::F32, "x");
    const MatView v = matrix_view(x, "x");
    if (v.cols % H || (v.cols / H) % 2) {
      throw Error(LORA_ERR_SHAPE, "heads: " + std::to_string(H) + " heads do not split the row length " + std::to_string(v.cols) + " into even head dims", "heads");
    }
    const int64_t D = v.cols / H;
    ops::Rope p{v.rows, H, D, x.data_as<float>(), v.ld, y.data_as<float>(), f32_rows(y, "y", v.rows, v.cols), i32_data(pos, "positions", v.rows),
                f32_data(inv, "invFreq", D / 2), inverse};
    check_no_alias({span_of(y, "y")}, {span_of(x, "x"), span_of(pos, "positions"), span_of(inv, "invFreq")}, {{"y", "x"}});
    const ops::OpTable& t = pick_backend(a, 6, "rope", {x.dtype}, {v.rows, H, D});
    t.rope(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

// gate and up: both f32 or both bf16 [rows, F] (column slices of one gate|up buffer work); returns
// gate's view (up's shape and dtype checked against it).
MatView gate_up_view(const Tensor& gate, const Tensor& up, int64_t* ldu) {
  expect_dtype_in(gate, {DType::F32, DType::BF16}, "gate");
  if (up.dtype != gate.dtype) {
    throw Error(LORA_ERR_DTYPE, std::string("up: expected gate's dtype ") + dtype_name(gate.dtype) + ", got " + dtype_name(up.dtype), "up");
  }
  const MatView v = matrix_view(gate, "gate");
  const MatView u = matrix_view(up, "up");
  if (u.rows != v.rows || u.cols != v.cols) {
    throw Error(LORA_ERR_SHAPE, "up: expected " + std::to_string(v.rows) + " rows x " + std::to_string(v.cols) + " columns, got " +
                std::to_string(u.rows) + " x " + std::to_string(u.cols), "up");
  }
  *ldu = u.ld;
  return v;
}

Napi::Value SwiGlu(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "swiGlu");
    Tensor& gate = a.tensor(0, "gate");
    Tensor& up = a.tensor(1, "up");
    Tensor& y = a.tensor(2, "y");
    int64_t ldu = 0;
    const MatView v = gate_up_view(gate, up, &ldu);
    ops::SwiGlu p{v.rows, v.cols, gate.data(), v.ld, up.data(), ldu, y.data_as<float>(), f32_rows(y, "y", v.rows, v.cols), gate.dtype};
    check_no_alias({span_of(y, "y")}, {span_of(gate, "gate"), span_of(up, "up")});
    const ops::OpTable& t = pick_backend(a, 3, "swiglu", {gate.dtype}, {v.rows, v.cols});
    t.swiglu(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value SwiGluBackward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "swiGluBackward");
    Tensor& gate = a.tensor(0, "gate");
    Tensor& up = a.tensor(1, "up");
    Tensor& dy = a.tensor(2, "dy");
    Tensor& dgate = a.tensor(3, "dgate");
    Tensor& dup = a.tensor(4, "dup");
    int64_t ldu = 0;
    const MatView v = gate_up_view(gate, up, &ldu);
    const int64_t M = v.rows, F = v.cols;
    ops::SwiGluBwd p{M, F, gate.data(), v.ld, up.data(), ldu, dy.data_as<float>(), f32_rows(dy, "dy", M, F),
                     dgate.data_as<float>(), f32_rows(dgate, "dgate", M, F), dup.data_as<float>(), f32_rows(dup, "dup", M, F), gate.dtype};
    check_no_alias({span_of(dgate, "dgate"), span_of(dup, "dup")}, {span_of(gate, "gate"), span_of(up, "up"), span_of(dy, "dy")});
    const ops::OpTable& t = pick_backend(a, 5, "swiglu_bwd", {gate.dtype}, {M, F});
    t.swiglu_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opRmsNorm", Napi::Function::New<RmsNorm>(env, "opRmsNorm"));
  exports.Set("opRmsNormBackward", Napi::Function::New<RmsNormBackward>(env, "opRmsNormBackward"));
  exports.Set("opRope", Napi::Function::New<Rope>(env, "opRope"));
  exports.Set("opSwiGlu", Napi::Function::New<SwiGlu>(env, "opSwiGlu"));
  exports.Set("opSwiGluBackward", Napi::Function::New<SwiGluBackward>(env, "opSwiGluBackward"));
}

const Registrar reg("ops_llama", &Register);

}  // namespace

}  // namespace lora::binding
