// Bindings of embedding, layernorm and the elementwise ops (f32 activations).
//   opEmbedding(ids, table (f32|bf16), out, pos|null, posTable|null, posOffset, backend?)
//   opEmbeddingBackward(ids, dout, dtable|null, pos|null, dposTable|null, posOffset, backend?)
//   opLayerNorm(x, gamma|null, beta|null, y, mean, rstd, eps, backend?)
//   opLayerNormBackward(dy, x, gamma|null, mean, rstd, dx, dgamma|null, dbeta|null, backend?)
//   opLayerNormBackwardFromOutput(dy, y, gamma, beta|null, rstd, dx, dgamma|null, dbeta|null, backend?)
//   opRelu(x, y, backend?)  opReluBackward(y, dy, dx, backend?)  opAdd(a, b, out, alpha, backend?)
//   opReluMask(x, y, bits, backend?)  opReluMaskBackward(bits, dy, dx, backend?)
//     (bits: i64 [ceil(n/64)], the keep mask in place of a kept y)
//   opScale(x, out, alpha, backend?)  opCast(src, dst, backend?)
//   opDropout(x, out, p, seed, offset, backend?)
#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"

namespace lora::binding {

namespace {

// Ids out of range would index outside the tables; checked on the host (a copy for 'cuda' tensors).
void check_ids(const Tensor& t, const int32_t* data, int64_t n, int64_t lo, int64_t hi, const char* name) {
  const HostI32 ids(t, data, n);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < lo || ids[i] >= hi) {
      throw Error(LORA_ERR_INVALID_ARG, std::string(name) + "[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                  " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + ")", name);
    }
  }
}

Napi::Value Embedding(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "embedding");
    Tensor& ids = a.tensor(0, "ids");
    Tensor& table = a.tensor(1, "table");
    Tensor& out = a.tensor(2, "out");
    Tensor* pos = a.optional_tensor(3, "positions");
    Tensor* ptab = a.optional_tensor(4, "posTable");
    const int64_t off = a.integer_or(5, "posOffset", 0, 1 << 20, 2);
    if (!pos != !ptab) a.bad(pos ? "posTable" : "positions", "given together with " + std::string(pos ? "positions" : "posTable"));
    expect_rank(table, 2, "table");
    const int64_t V = table.shape[0], C = table.shape[1], M = ids.numel();
    const int32_t* idp = i32_data(ids, "ids", M);
    expect_dtype_in(table, {DType::F32, DType::BF16}, "table");
    expect_contiguous(table, "table");
    ops::EmbeddingFwd p{M, C, V, 0, idp, table.data_as<void>(), nullptr, nullptr, off, f32_data(out, "out", M * C)};
    p.table_dtype = table.dtype;
    if (out.shape.back() != C) throw Error(LORA_ERR_SHAPE, "out: last dimension must be " + std::to_string(C), "out");
    check_ids(ids, idp, M, 0, V, "ids");
    std::vector<Span> ins = {span_of(ids, "ids"), span_of(table, "table")};
    if (pos) {
      expect_rank(*ptab, 2, "posTable");
      if (ptab->shape[1] != C) throw Error(LORA_ERR_SHAPE, "posTable: expected " + std::to_string(C) + " columns, got " + shape_str(ptab->shape), "posTable");
      p.P = ptab->shape[0];
      p.pos = i32_data(*pos, "positions", M);
      p.pos_table = f32_data(*ptab, "posTable", p.P * C);
      check_ids(*pos, p.pos, M, -off, p.P - off, "positions");
      ins.push_back(span_of(*pos, "positions"));
      ins.push_back(span_of(*ptab, "posTable"));
    }
    check_no_alias({span_of(out, "out")}, ins);
    const ops::OpTable& t = pick_backend(a, 6, "embedding", {table.dtype}, {M, C, V});
    t.embedding_fwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "embeddingBackward");
    Tensor& ids = a.tensor(0, "ids");
    Tensor& dout = a.tensor(1, "dout");
    Tensor* dtab = a.optional_tensor(2, "dtable");
    Tensor* pos = a.optional_tensor(3, "positions");
    Tensor* dptab = a.optional_tensor(4, "dposTable");
    const int64_t off = a.integer_or(5, "posOffset", 0, 1 << 20, 2);
    const int64_t M = ids.numel();
    const int64_t C = dout.rank() ? dout.shape.back() : 0;
    ops::EmbeddingBwd p{M, C, 0, 0, i32_data(ids, "ids", M), nullptr, off, f32_data(dout, "dout", M * C), nullptr, nullptr};
    std::vector<Span> outs, ins = {span_of(ids, "ids"), span_of(dout, "dout")};
    if (dtab) {
      expect_rank(*dtab, 2, "dtable");
      p.V = dtab->shape[0];
      p.dtable = f32_data(*dtab, "dtable", p.V * C);
      check_ids(ids, p.ids, M, 0, p.V, "ids");
      outs.push_back(span_of(*dtab, "dtable"));
    }
    if (dptab) {
      if (!pos) a.bad("positions", "a Tensor when dposTable is given");
      expect_rank(*dptab, 2, "dposTable");
      p.P = dptab->shape[0];
      p.pos = i32_data(*pos, "positions", M);
      p.dpos_table = f32_data(*dptab, "dposTable", p.P * C);
      check_ids(*pos, p.pos, M, -off, p.P - off, "positions");
      outs.push_back(span_of(*dptab, "dposTable"));
      ins.push_back(span_of(*pos, "positions"));
    }
    check_no_alias(outs, ins);
    const ops::OpTable& t = pick_backend(a, 6, "embedding_bwd", {dout.dtype}, {M, C, p.V});
    t.embedding_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "layerNorm");
    Tensor& x = a.tensor(0, "x");
    Tensor* g = a.optional_tensor(1, "gamma");
    Tensor* b = a.optional_tensor(2, "beta");
    Tensor& y = a.tensor(3, "y");
    Tensor& mean = a.tensor(4, "mean");
    Tensor& rstd = a.tensor(5, "rstd");
    const double eps = a.number_or(6, "eps", 1e-5);
    if (!(eps > 0)) a.bad("eps", "a positive number");
    const MatView v = matrix_view(x, "x");
    const int64_t M = v.rows, C = v.cols;
    ops::LayerNormFwd p{M, C, static_cast<float>(eps), f32_data(x, "x", M * C), g ? f32_data(*g, "gamma", C) : nullptr,
                        b ? f32_data(*b, "beta", C) : nullptr, f32_data(y, "y", M * C), f32_data(mean, "mean", M), f32_data(rstd, "rstd", M)};
    std::vector<Span> ins = {span_of(x, "x")};
    if (g) ins.push_back(span_of(*g, "gamma"));
    if (b) ins.push_back(span_of(*b, "beta"));
    check_no_alias({span_of(y, "y"), span_of(mean, "mean"), span_of(rstd, "rstd")}, ins);
    const ops::OpTable& t = pick_backend(a, 7, "layernorm", {x.dtype}, {M, C});
    t.layernorm_fwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "layerNormBackward");
    Tensor& dy = a.tensor(0, "dy");
    Tensor& x = a.tensor(1, "x");
    Tensor* g = a.optional_tensor(2, "gamma");
    Tensor& mean = a.tensor(3, "mean");
    Tensor& rstd = a.tensor(4, "rstd");
    Tensor& dx = a.tensor(5, "dx");
    Tensor* dg = a.optional_tensor(6, "dgamma");
    Tensor* db = a.optional_tensor(7, "dbeta");
    const MatView v = matrix_view(x, "x");
    const int64_t M = v.rows, C = v.cols;
    ops::LayerNormBwd p{M, C, f32_data(dy, "dy", M * C), f32_data(x, "x", M * C), g ? f32_data(*g, "gamma", C) : nullptr,
                        f32_data(mean, "mean", M), f32_data(rstd, "rstd", M), f32_data(dx, "dx", M * C),
                        dg ? f32_data(*dg, "dgamma", C) : nullptr, db ? f32_data(*db, "dbeta", C) : nullptr};
    std::vector<Span> outs = {span_of(dx, "dx")};
    if (dg) outs.push_back(span_of(*dg, "dgamma"));
    if (db) outs.push_back(span_of(*db, "dbeta"));
    std::vector<Span> ins = {span_of(dy, "dy"), span_of(x, "x"), span_of(mean, "mean"), span_of(rstd, "rstd")};
    if (g) ins.push_back(span_of(*g, "gamma"));
    check_no_alias(outs, ins);
    const ops::OpTable& t = pick_backend(a, 8, "layernorm_bwd", {x.dtype}, {M, C});
    t.layernorm_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

// x̂ = (y - beta) / gamma needs every gamma nonzero: checked here (gamma read on the host; a
// copy of its C floats for 'cuda' tensors).
void expect_nonzero_gamma(const Tensor& g, const float* data, int64_t C) {
  std::vector<float> copy;
  const float* h = data;
  if (!g.device().is_host_memory()) {
    copy.resize(static_cast<size_t>(C));
    copy_bytes(Device{}, copy.data(), g.device(), data, static_cast<size_t>(C) * sizeof(float));
    h = copy.data();
  }
  for (int64_t c = 0; c < C; ++c) {
    if (!(h[c] != 0.f)) throw Error(LORA_ERR_INVALID_ARG, "gamma: element " + std::to_string(c) + " is " + std::to_string(h[c]) + "; the backward from the output divides by gamma (use the input form)", "gamma");
  }
}

Napi::Value LayerNormBackwardFromOutput(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "layerNormBackwardFromOutput");
    Tensor& dy = a.tensor(0, "dy");
    Tensor& y = a.tensor(1, "y");
    Tensor& g = a.tensor(2, "gamma");
    Tensor* beta = a.optional_tensor(3, "beta");
    Tensor& rstd = a.tensor(4, "rstd");
    Tensor& dx = a.tensor(5, "dx");
    Tensor* dg = a.optional_tensor(6, "dgamma");
    Tensor* db = a.optional_tensor(7, "dbeta");
    const MatView v = matrix_view(y, "y");
    const int64_t M = v.rows, C = v.cols;
    ops::LayerNormBwd p{M, C, f32_data(dy, "dy", M * C), nullptr, f32_data(g, "gamma", C), nullptr, f32_data(rstd, "rstd", M),
                        f32_data(dx, "dx", M * C), dg ? f32_data(*dg, "dgamma", C) : nullptr, db ? f32_data(*db, "dbeta", C) : nullptr};
    p.y = f32_data(y, "y", M * C);
    p.beta = beta ? f32_data(*beta, "beta", C) : nullptr;
    std::vector<Span> outs = {span_of(dx, "dx")};
    if (dg) outs.push_back(span_of(*dg, "dgamma"));
    if (db) outs.push_back(span_of(*db, "dbeta"));
    std::vector<Span> ins = {span_of(dy, "dy"), span_of(y, "y"), span_of(g, "gamma"), span_of(rstd, "rstd")};
    if (beta) ins.push_back(span_of(*beta, "beta"));
    check_no_alias(outs, ins);
    const ops::OpTable& t = pick_backend(a, 8, "layernorm_bwd", {y.dtype}, {M, C});
    expect_nonzero_gamma(g, p.gamma, C);
    t.layernorm_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

int64_t same_numel(const Tensor& a, const char* an, const Tensor& b, const char* bn) {
  if (a.numel() != b.numel()) throw Error(LORA_ERR_SHAPE, std::string(bn) + ": expected " + std::to_string(a.numel()) + " elements (as " + an + "), got shape " + shape_str(b.shape), bn);
  return a.numel();
}

Napi::Value Relu(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "relu");
    Tensor& x = a.tensor(0, "x");
    Tensor& y = a.tensor(1, "y");
    const int64_t n = same_numel(x, "x", y, "y");
    ops::Relu p{n, f32_data(x, "x", n), f32_data(y, "y", n)};
    check_no_alias({span_of(y, "y")}, {span_of(x, "x")}, {{"y", "x"}});
    const ops::OpTable& t = pick_backend(a, 2, "relu", {x.dtype}, {n});
    t.relu(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "reluBackward");
    Tensor& y = a.tensor(0, "y");
    Tensor& dy = a.tensor(1, "dy");
    Tensor& dx = a.tensor(2, "dx");
    const int64_t n = same_numel(y, "y", dy, "dy");
    same_numel(y, "y", dx, "dx");
    ops::ReluBwd p{n, f32_data(y, "y", n), f32_data(dy, "dy", n), f32_data(dx, "dx", n)};
    check_no_alias({span_of(dx, "dx")}, {span_of(y, "y"), span_of(dy, "dy")}, {{"dx", "dy"}});
    const ops::OpTable& t = pick_backend(a, 3, "relu_bwd", {y.dtype}, {n});
    t.relu_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value ReluMask(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "reluMask");
    Tensor& x = a.tensor(0, "x");
    Tensor& y = a.tensor(1, "y");
    Tensor& bits = a.tensor(2, "bits");
    const int64_t n = same_numel(x, "x", y, "y");
    ops::Relu p{n, f32_data(x, "x", n), f32_data(y, "y", n), bits_data(bits, "bits", n)};
    check_no_alias({span_of(y, "y"), span_of(bits, "bits")}, {span_of(x, "x")}, {{"y", "x"}});
    const ops::OpTable& t = pick_backend(a, 3, "relu", {x.dtype}, {n});
    t.relu(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value ReluMaskBackward(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "reluMaskBackward");
    Tensor& bits = a.tensor(0, "bits");
    Tensor& dy = a.tensor(1, "dy");
    Tensor& dx = a.tensor(2, "dx");
    const int64_t n = same_numel(dy, "dy", dx, "dx");
    ops::ReluBwd p{n, nullptr, f32_data(dy, "dy", n), f32_data(dx, "dx", n), bits_data(bits, "bits", n)};
    check_no_alias({span_of(dx, "dx")}, {span_of(bits, "bits"), span_of(dy, "dy")}, {{"dx", "dy"}});
    const ops::OpTable& t = pick_backend(a, 3, "relu_bwd", {dy.dtype}, {n});
    t.relu_bwd(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "add");
    Tensor& x = a.tensor(0, "a");
    Tensor& y = a.tensor(1, "b");
    Tensor& out = a.tensor(2, "out");
    const double alpha = a.number_or(3, "alpha", 1.0);
    const int64_t n = same_numel(x, "a", y, "b");
    same_numel(x, "a", out, "out");
    ops::Add p{n, f32_data(x, "a", n), f32_data(y, "b", n), static_cast<float>(alpha), f32_data(out, "out", n)};
    check_no_alias({span_of(out, "out")}, {span_of(x, "a"), span_of(y, "b")}, {{"out", "a"}, {"out", "b"}});
    const ops::OpTable& t = pick_backend(a, 4, "add", {x.dtype}, {n});
    t.add(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value Scale(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "scale");
    Tensor& x = a.tensor(0, "x");
    Tensor& out = a.tensor(1, "out");
    const double alpha = a.number(2, "alpha");
    const int64_t n = same_numel(x, "x", out, "out");
    ops::Scale p{n, f32_data(x, "x", n), static_cast<float>(alpha), f32_data(out, "out", n)};
    check_no_alias({span_of(out, "out")}, {span_of(x, "x")}, {{"out", "x"}});
    const ops::OpTable& t = pick_backend(a, 3, "scale", {x.dtype}, {n});
    t.scale(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value Cast(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "cast");
    Tensor& src = a.tensor(0, "src");
    Tensor& dst = a.tensor(1, "dst");
    const int64_t n = same_numel(src, "src", dst, "dst");
    expect_dtype_in(src, {DType::F32, DType::F16, DType::BF16}, "src");
    expect_dtype_in(dst, {DType::F32, DType::F16, DType::BF16}, "dst");
    expect_contiguous(src, "src");
    expect_contiguous(dst, "dst");
    ops::Cast p{n, src.data(), src.dtype, dst.data(), dst.dtype};
    check_no_alias({span_of(dst, "dst")}, {span_of(src, "src")});
    const ops::OpTable& t = pick_backend(a, 2, "cast", {src.dtype, dst.dtype}, {n});
    t.cast(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

Napi::Value Dropout(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "dropout");
    Tensor& x = a.tensor(0, "x");
    Tensor& out = a.tensor(1, "out");
    const double pr = a.number(2, "p");
    if (pr < 0.0 || pr > 1.0) a.bad("p", "a probability in [0, 1]");
    ops::Dropout d;
    d.p = static_cast<float>(pr);
    d.seed = static_cast<uint64_t>(a.integer_or(3, "seed", 0, int64_t(1) << 53, 0));
    d.offset = static_cast<uint64_t>(a.integer_or(4, "offset", 0, int64_t(1) << 53, 0));
    const int64_t n = same_numel(x, "x", out, "out");
    ops::DropoutOp p{n, f32_data(x, "x", n), d, f32_data(out, "out", n)};
    check_no_alias({span_of(out, "out")}, {span_of(x, "x")}, {{"out", "x"}});
    const ops::OpTable& t = pick_backend(a, 5, "dropout", {x.dtype}, {n});
    t.dropout(op_ctx(a, t), p);
    return info.Env().Undefined();
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("opEmbedding", Napi::Function::New<Embedding>(env, "opEmbedding"));
  exports.Set("opEmbeddingBackward", Napi::Function::New<EmbeddingBackward>(env, "opEmbeddingBackward"));
  exports.Set("opLayerNorm", Napi::Function::New<LayerNorm>(env, "opLayerNorm"));
  exports.Set("opLayerNormBackward", Napi::Function::New<LayerNormBackward>(env, "opLayerNormBackward"));
  exports.Set("opLayerNormBackwardFromOutput", Napi::Function::New<LayerNormBackwardFromOutput>(env, "opLayerNormBackwardFromOutput"));
  exports.Set("opRelu", Napi::Function::New<Relu>(env, "opRelu"));
  exports.Set("opReluBackward", Napi::Function::New<ReluBackward>(env, "opReluBackward"));
  exports.Set("opReluMask", Napi::Function::New<ReluMask>(env, "opReluMask"));
  exports.Set("opReluMaskBackward", Napi::Function::New<ReluMaskBackward>(env, "opReluMaskBackward"));
  exports.Set("opAdd", Napi::Function::New<Add>(env, "opAdd"));
  exports.Set("opScale", Napi::Function::New<Scale>(env, "opScale"));
  exports.Set("opCast", Napi::Function::New<Cast>(env, "opCast"));
  exports.Set("opDropout", Napi::Function::New<Dropout>(env, "opDropout"));
}

const Registrar reg("ops_nn", &Register);

}  // namespace

}  // namespace lora::binding
