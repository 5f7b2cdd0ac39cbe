// Bindings of the matmul layouts and of quantize/dequantize.
//   opMatmulXWt(x, w, bias|null, y, accumulate, backend?, reluBits?, residual?, dropout?, seed?, offset?)
//                                                            y = x·wᵀ (+ bias) (+ y); with reluBits
//                                                            (i64 [ceil(M·N/64)], no accumulate)
//                                                            y = relu(x·wᵀ + bias) and its keep bits;
//                                                            with residual (f32 [M, N], no accumulate)
//                                                            y = residual + dropout(x·wᵀ + bias)
//   opMatmulDYW(dy, w, dx, accumulate, backend?, maskBits?)  dx = dy·w (+ dx); with maskBits
//                                                            (i64 [ceil(M·K/64)]) dx = mask ⊙ dy·w (+ dx)
//   opMatmulDW(dy, x, dw, dbias|null, backend?)              dw += dyᵀ·x, dbias += Σ dy
//   opQuantize(src, dtype, blockSize, backend?) -> Tensor    f32 [N, K] -> i8/int4/nf4, or bf16p (cpu panel layout)
//   opDequantize(w, backend?) -> Tensor                       any weight -> f32
#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"
#include "tensor_wrap.h"

namespace lora::binding {

namespace {

Napi::Value MatmulXWt(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "matmulXWt");
    Tensor& x = a.tensor(0, "x");
    Tensor& wt = a.tensor(1, "w");
    Tensor* bias = a.optional_tensor(2, "bias");
    Tensor& y = a.tensor(3, "y");
    const bool acc = a.boolean_or(4, "accumulate", false);
    const ops::Weight w = as_weight(wt, "w");
    const int64_t N = w.rows, K = w.cols;
    const MatView xv = matrix_view(x, "x");
    if (xv.cols != K) throw Error(LORA_ERR_SHAPE, "x: last dimension " + std::to_string(xv.cols) + " does not match w's input features " + std::to_string(K) + " (w is [N, K] = " + shape_str(wt.shape) + ")", "x");
    const int64_t M = xv.rows;
    ops::MatmulXWt p{M, K, N, as_mat(x, "x", M, K), w, bias ? f32_data(*bias, "bias", N) : nullptr, as_mut_mat(y, "y", M, N), acc};
    Tensor* bits = a.optional_tensor(6, "reluBits");
    std::vector<Span> outs = {span_of(y, "y")};
    if (bits) {
      if (acc) throw Error(LORA_ERR_INVALID_ARG, "reluBits: the fused relu does not accumulate into y (accumulate must be false)", "reluBits");
      p.relu_bits = bits_data(*bits, "reluBits", M * N);
      outs.push_back(span_of(*bits, "reluBits"));
    }
    std::vector<Span> ins = {span_of(x, "x"), span_of(wt, "w")};
    if (bias) ins.push_back(span_of(*bias, "bias"));
    if (Tensor* res = a.optional_tensor(7, "residual")) {
      if (acc || bits) throw Error(LORA_ERR_INVALID_ARG, "residual: y = residual + dropout(x·wᵀ + bias) goes with neither accumulate nor reluBits", "residual");
      expect_dtype(y, DType::F32, "y");
      expect_dtype(*res, DType::F32, "residual");
      const ops::Mat rm = as_mat(*res, "residual", M, N);
      p.residual = static_cast<const float*>(rm.data);
      p.ld_residual = rm.ld;
      p.drop = read_dropout(a, 8);
      ins.push_back(span_of(*res, "residual"));
    } else if (a.number_or(8, "dropout", 0.0) != 0.0) {
      throw Error(LORA_ERR_INVALID_ARG, "dropout: the fused dropout goes with a residual", "dropout");
    }
    check_no_alias(outs, ins);
    const ops::OpTable& t = pick_backend(a, 5, "matmul_xwt", {x.dtype, wt.dtype, y.dtype}, {M, K, N});
    t.matmul_xwt(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value MatmulDYW(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "matmulDYW");
    Tensor& dy = a.tensor(0, "dy");
    Tensor& wt = a.tensor(1, "w");
    Tensor& dx = a.tensor(2, "dx");
    const bool acc = a.boolean_or(3, "accumulate", false);
    const ops::Weight w = as_weight(wt, "w");
    const int64_t N = w.rows, K = w.cols;
    const MatView v = matrix_view(dy, "dy");
    if (v.cols != N) throw Error(LORA_ERR_SHAPE, "dy: last dimension " + std::to_string(v.cols) + " does not match w's output features " + std::to_string(N), "dy");
    const int64_t M = v.rows;
    ops::MatmulDYW p{M, N, K, as_mat(dy, "dy", M, N), w, as_mut_mat(dx, "dx", M, K), acc};
    Tensor* bits = a.optional_tensor(5, "maskBits");
    std::vector<Span> ins = {span_of(dy, "dy"), span_of(wt, "w")};
    if (bits) {
      p.mask_bits = bits_data(*bits, "maskBits", M * K);
      ins.push_back(span_of(*bits, "maskBits"));
    }
    check_no_alias({span_of(dx, "dx")}, ins);
    const ops::OpTable& t = pick_backend(a, 4, "matmul_dyw", {dy.dtype, wt.dtype, dx.dtype}, {M, N, K});
    t.matmul_dyw(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value MatmulDW(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "matmulDW");
    Tensor& dy = a.tensor(0, "dy");
    Tensor& x = a.tensor(1, "x");
    Tensor& dw = a.tensor(2, "dw");
    Tensor* db = a.optional_tensor(3, "dbias");
    const MatView dv = matrix_view(dy, "dy");
    const MatView xv = matrix_view(x, "x");
    const int64_t M = dv.rows, N = dv.cols, K = xv.cols;
    if (xv.rows != M) throw Error(LORA_ERR_SHAPE, "x: " + std::to_string(xv.rows) + " rows, but dy has " + std::to_string(M), "x");
    expect_dtype(dw, DType::F32, "dw");
    expect_shape(dw, {N, K}, "dw");
    ops::MatmulDW p{M, N, K, as_mat(dy, "dy", M, N), as_mat(x, "x", M, K), f32_data(dw, "dw", N * K), K,
                    db ? f32_data(*db, "dbias", N) : nullptr};
    std::vector<Span> outs = {span_of(dw, "dw")};
    if (db) outs.push_back(span_of(*db, "dbias"));
    check_no_alias(outs, {span_of(dy, "dy"), span_of(x, "x")});
    const ops::OpTable& t = pick_backend(a, 4, "matmul_dw", {dy.dtype, x.dtype, dw.dtype}, {M, N, K});
    t.matmul_dw(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "quantize");
    Tensor& src = a.tensor(0, "src");
    const DType dt = a.dtype(1, "dtype");
    if (!(dt == DType::I8 || dt == DType::INT4 || dt == DType::NF4 || dt == DType::BF16P)) a.bad("dtype", "'i8', 'int4', 'nf4' or 'bf16p'");
    expect_rank(src, 2, "src");
    const int64_t rows = src.shape[0], cols = src.shape[1];
    f32_data(src, "src", rows * cols);
    if (dt == DType::BF16P) {
      // The cpu GEMM's panel layout (dtype.h): whole 16-row groups and k pairs.
      if (!bf16p_shape_ok(rows, cols)) throw Error(LORA_ERR_SHAPE, "src: bf16p needs rows % 16 == 0 and an even row length, got " + shape_str(src.shape), "src");
      const ops::OpTable& t = pick_backend(a, 3, "quantize", {src.dtype, dt}, {rows, cols, 0});
      Tensor out = Tensor::empty(DType::BF16P, src.shape, a.op_device());
      ops::Quantize p{rows, cols, 0, src.data_as<float>(), dt, out.data(), nullptr};
      t.quantize(op_ctx(a, t), p);
      return TensorWrap::Wrap(info.Env(), std::move(out));
    }
    int64_t block = cols;
    if (dt != DType::I8) {
      block = a.integer_or(2, "blockSize", 2, 1 << 20, 64);
      if (block % 2 || cols % block) a.bad("blockSize", "even and a divisor of the row length " + std::to_string(cols));
    }
    const ops::OpTable& t = pick_backend(a, 3, "quantize", {src.dtype, dt}, {rows, cols, block});
    // The result lives where the op ran: host memory ('cpu') for the host backends, the source's
    // CUDA device for 'cuda'.
    const Device od = a.op_device();
    Tensor out = Tensor::empty(dt == DType::I8 ? DType::I8 : DType::U8, dt == DType::I8 ? src.shape : Shape{rows, (cols + 1) / 2}, od);
    out.dtype = dt;
    out.shape = src.shape;
    out.strides = Tensor::contiguous_strides(out.shape);
    out.block_size = block;
    const int64_t nscales = dt == DType::I8 ? rows : rows * cols / block;
    out.scales = std::make_shared<Storage>(od, static_cast<size_t>(nscales > 0 ? nscales : 1) * 4);
    ops::Quantize p{rows, cols, block, src.data_as<float>(), dt, out.data(), static_cast<float*>(out.scales->data())};
    t.quantize(op_ctx(a, t), p);
    return TensorWrap::Wrap(info.Env(), std::move(out));
  });
}

Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "dequantize");
    Tensor& wt = a.tensor(0, "w");
    const ops::Weight w = as_weight(wt, "w");
    const ops::OpTable& t = pick_backend(a, 1, "dequantize", {wt.dtype}, {w.rows, w.cols});
    Tensor out = Tensor::empty(DType::F32, {w.rows, w.cols}, a.op_device());  // host, or the weight's CUDA device
    ops::Dequantize p{w, out.data_as<float>()};
    t.dequantize(op_ctx(a, t), p);
    return TensorWrap::Wrap(info.Env(), std::move(out));
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opMatmulXWt", Napi::Function::New<MatmulXWt>(env, "opMatmulXWt"));
  exports.Set("opMatmulDYW", Napi::Function::New<MatmulDYW>(env, "opMatmulDYW"));
  exports.Set("opMatmulDW", Napi::Function::New<MatmulDW>(env, "opMatmulDW"));
  exports.Set("opQuantize", Napi::Function::New<Quantize>(env, "opQuantize"));
  exports.Set("opDequantize", Napi::Function::New<Dequantize>(env, "opDequantize"));
}

const Registrar reg("ops_matmul", &Register);

}  // namespace

}  // namespace lora::binding
