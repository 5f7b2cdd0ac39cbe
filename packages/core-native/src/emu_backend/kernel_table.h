// The OpTable over the kernels of cuda/kernels, shared by the `emu` backend (this header compiled
// by g++ against the emulator, emu_ops.cc) and the `cuda` backend (compiled by nvcc,
// ../cuda_backend/cuda_ops.cu). The kernel namespace (lora::kemu / lora::kgpu) keeps the two
// builds apart in one binary. Pointers in the op structs are the backend's memory (host memory
// for emu, device memory for cuda); the f64/i64 scalars the ops return (loss, count, Σx²) are
// host pointers, staged through device scratch and copied back.
#pragma once

#include "kernels/all.cuh"

#include "../ops/ops.h"

namespace lora::LORA_KNS::table {

inline ET et(DType t) {
  switch (t) {
    case DType::F32: return ET::F32;
    case DType::F16: return ET::F16;
    case DType::BF16: return ET::BF16;
    case DType::I8: return ET::I8;
    case DType::INT4: return ET::INT4;
    case DType::NF4: return ET::NF4;
    default: throw KernelArgError(std::string("dtype ") + dtype_name(t) + " is not a kernel element type");
  }
}
inline WeightView wv(const ops::Weight& w) { return WeightView{w.data, w.scales, et(w.dtype), w.rows, w.cols, w.block}; }
inline DropoutArgs dv(const ops::Dropout& d) { return make_dropout(d.p, d.seed, d.offset); }
// The op's stream: Ctx::stream (the device's stream under the cuda backend; null, the default
// stream, under the emulator, which ignores streams). Every op synchronises it before returning,
// so results (and the host scalars below) are ready when the binding returns to JS.
inline Stream stream_of(const ops::Ctx& c) { return static_cast<Stream>(c.stream); }
inline void sync(const ops::Ctx& c) { LORA_CUDA_CHECK(cudaStreamSynchronize(stream_of(c))); }

inline void matmul_xwt(const ops::Ctx& c, const ops::MatmulXWt& p) {
  LORA_KNS::matmul_xwt(p.M, p.K, p.N, p.x.data, et(p.x.dtype), p.x.ld, wv(p.w), p.bias, p.y.data, et(p.y.dtype), p.y.ld, p.accumulate, stream_of(c), p.relu_bits,
                       p.residual, p.ld_residual, dv(p.drop));
  sync(c);
}
inline void matmul_dyw(const ops::Ctx& c, const ops::MatmulDYW& p) {
  LORA_KNS::matmul_dyw(p.M, p.N, p.K, p.dy.data, et(p.dy.dtype), p.dy.ld, wv(p.w), p.dx.data, et(p.dx.dtype), p.dx.ld, p.accumulate, stream_of(c), p.mask_bits);
  sync(c);
}
inline void matmul_dw(const ops::Ctx& c, const ops::MatmulDW& p) {
  LORA_KNS::matmul_dw(p.M, p.N, p.K, p.dy.data, et(p.dy.dtype), p.dy.ld, p.x.data, et(p.x.dtype), p.x.ld, p.dw, p.ld_dw, p.dbias, stream_of(c));
  sync(c);
}
inline void quantize(const ops::Ctx& c, const ops::Quantize& p) {
  LORA_KNS::quantize(p.rows, p.cols, p.block, p.src, et(p.dtype), p.packed, p.scales, stream_of(c));
  sync(c);
}
inline void dequantize(const ops::Ctx& c, const ops::Dequantize& p) {
  LORA_KNS::dequantize(wv(p.w), p.dst, stream_of(c));
  sync(c);
}
inline void lora_fwd(const ops::Ctx& c, const ops::LoraFwd& p) {
  LORA_KNS::lora_fwd(LoraShape{p.M, p.K, p.N, p.r, p.G}, p.x.data, et(p.x.dtype), p.x.ld, wv(p.w), p.bias, p.a, p.b, p.scale, dv(p.drop),
                     p.y.data, et(p.y.dtype), p.y.ld, p.xa, stream_of(c));
  sync(c);
}
inline void lora_segments(const ops::Ctx& c, const ops::LoraSegments& p) {
  std::vector<LoraSegArgs> segs;
  for (int64_t i = 0; i < p.nseg; ++i) segs.push_back(LoraSegArgs{p.segs[i].start, p.segs[i].len, p.segs[i].r, p.segs[i].a, p.segs[i].b, p.segs[i].scale});
  LORA_KNS::lora_segments(p.M, p.K, p.N, p.G, p.x.data, et(p.x.dtype), p.x.ld, wv(p.w), p.bias, p.y.data, et(p.y.dtype), p.y.ld, segs.data(),
                          p.nseg, stream_of(c));
  sync(c);
}
inline void lora_bwd(const ops::Ctx& c, const ops::LoraBwd& p) {
  LORA_KNS::lora_bwd(LoraShape{p.M, p.K, p.N, p.r, p.G}, p.dy.data, et(p.dy.dtype), p.dy.ld, p.x.data, et(p.x.dtype), p.x.ld, wv(p.w), p.a,
                     p.b, p.xa, p.scale, dv(p.drop), p.dx.data, p.dx.data ? et(p.dx.dtype) : ET::F32, p.dx.ld, p.accumulate, p.da, p.db,
                     stream_of(c));
  sync(c);
}
inline void embedding_fwd(const ops::Ctx& c, const ops::EmbeddingFwd& p) {
  LORA_KNS::embedding_fwd(p.M, p.C, p.ids, p.table, et(p.table_dtype), p.pos, p.pos_table, p.pos_offset, p.out, stream_of(c));
  sync(c);
}
inline void embedding_bwd(const ops::Ctx& c, const ops::EmbeddingBwd& p) {
  LORA_KNS::embedding_bwd(p.M, p.C, p.ids, p.pos, p.pos_offset, p.dout, p.dtable, p.dpos_table, stream_of(c));
  sync(c);
}
inline void layernorm_fwd(const ops::Ctx& c, const ops::LayerNormFwd& p) {
  LORA_KNS::layernorm_fwd(p.M, p.C, p.eps, p.x, p.gamma, p.beta, p.y, p.mean, p.rstd, stream_of(c));
  sync(c);
}
inline void layernorm_bwd(const ops::Ctx& c, const ops::LayerNormBwd& p) {
  LORA_KNS::layernorm_bwd(p.M, p.C, p.dy, p.x, p.gamma, p.mean, p.rstd, p.dx, p.dgamma, p.dbeta, p.y, p.beta, stream_of(c));
  sync(c);
}
inline void attn_fwd(const ops::Ctx& c, const ops::AttnFwd& p) {
  AttnArgs a{};
  a.B = p.B; a.T = p.T; a.H = p.H; a.D = p.D; a.scale = p.scale;
  a.q = p.q; a.k = p.k; a.v = p.v; a.ldq = p.ldq; a.ldk = p.ldk; a.ldv = p.ldv; a.qkv_t = et(p.qkv_dtype);
  a.Hkv = p.Hkv; a.Tk = p.Tk; a.q_offset = p.q_offset;
  a.kv_len = p.kv_len; a.mask = p.mask; a.o = p.o; a.ldo = p.ldo; a.lse = p.lse;
  LORA_KNS::attn_fwd(a, stream_of(c), p.k_cache, p.v_cache);
  sync(c);
}
// The ragged call: each request's append and attention kernels in turn on the op's stream (one
// launch pair per request, one sync for all; no kernel over the whole ragged batch yet).
inline void attn_ragged(const ops::Ctx& c, const ops::AttnRagged& p) {
  for (int64_t r = 0; r < p.nrows; ++r) {
    const ops::AttnFwd f = ops::attn_ragged_row(p, r);
    AttnArgs a{};
    a.B = f.B; a.T = f.T; a.H = f.H; a.D = f.D; a.scale = f.scale;
    a.q = f.q; a.k = f.k; a.v = f.v; a.ldq = f.ldq; a.ldk = f.ldk; a.ldv = f.ldv; a.qkv_t = et(f.qkv_dtype);
    a.Hkv = f.Hkv; a.Tk = f.Tk; a.q_offset = f.q_offset;
    a.o = f.o; a.ldo = f.ldo; a.lse = f.lse;
    LORA_KNS::attn_fwd(a, stream_of(c), f.k_cache, f.v_cache);
  }
  sync(c);
}
inline void attn_bwd(const ops::Ctx& c, const ops::AttnBwd& p) {
  AttnArgs a{};
  a.B = p.B; a.T = p.T; a.H = p.H; a.D = p.D; a.scale = p.scale;
  a.q = p.q; a.k = p.k; a.v = p.v; a.ldq = p.ldq; a.ldk = p.ldk; a.ldv = p.ldv; a.qkv_t = et(p.qkv_dtype);
  a.Hkv = p.Hkv; a.Tk = p.Tk; a.q_offset = p.q_offset;
  a.kv_len = p.kv_len; a.mask = p.mask; a.o = const_cast<float*>(p.o); a.ldo = p.ldo; a.lse = const_cast<float*>(p.lse);
  a.dout = p.dout; a.lddo = p.lddo; a.dq = p.dq; a.lddq = p.lddq; a.dk = p.dk; a.lddk = p.lddk; a.dv = p.dv; a.lddv = p.lddv;
  DeviceBuffer delta(sizeof(float) * static_cast<size_t>(p.B * p.H * p.T + 1));  // + 1: never empty
  a.delta = delta.as<float>();
  LORA_KNS::attn_bwd(a, stream_of(c));
  sync(c);
}
inline void relu(const ops::Ctx& c, const ops::Relu& p) { LORA_KNS::relu(p.n, p.x, p.y, p.bits, stream_of(c)); sync(c); }
inline void relu_bwd(const ops::Ctx& c, const ops::ReluBwd& p) { LORA_KNS::relu_bwd(p.n, p.y, p.dy, p.dx, p.bits, stream_of(c)); sync(c); }
inline void add(const ops::Ctx& c, const ops::Add& p) { LORA_KNS::add(p.n, p.a, p.b, p.alpha, p.out, stream_of(c)); sync(c); }
inline void scale(const ops::Ctx& c, const ops::Scale& p) { LORA_KNS::scale(p.n, p.x, p.alpha, p.out, stream_of(c)); sync(c); }
inline void cast(const ops::Ctx& c, const ops::Cast& p) {
  LORA_KNS::cast(p.n, p.src, et(p.src_dtype), p.dst, et(p.dst_dtype), stream_of(c));
  sync(c);
}
inline void dropout(const ops::Ctx& c, const ops::DropoutOp& p) {
  LORA_KNS::dropout(p.n, p.x, p.drop.p, p.drop.seed, p.drop.offset, p.out, stream_of(c));
  sync(c);
}
inline void cross_entropy(const ops::Ctx& c, const ops::CrossEntropy& p) {
  DeviceBuffer scal(sizeof(double) + sizeof(int64_t));
  double* loss = scal.as<double>();
  int64_t* count = reinterpret_cast<int64_t*>(loss + 1);
  LORA_KNS::cross_entropy(p.M, p.C, p.V, p.chunk, p.ignore_index, p.grad_scale, p.h.data, et(p.h.dtype), p.h.ld, wv(p.w), p.targets, p.dh,
                          p.logits, p.loss_rows, loss, count, stream_of(c));
  double l = 0;
  int64_t n = 0;
  LORA_CUDA_CHECK(cudaMemcpyAsync(&l, loss, sizeof l, cudaMemcpyDeviceToHost, stream_of(c)));
  LORA_CUDA_CHECK(cudaMemcpyAsync(&n, count, sizeof n, cudaMemcpyDeviceToHost, stream_of(c)));
  sync(c);
  if (p.loss) *p.loss = l;
  if (p.count) *p.count = n;
}
inline void adamw(const ops::Ctx& c, const ops::AdamW& p) {
  LORA_KNS::adamw(p.n, p.p, p.g, p.m, p.v, p.lr, p.beta1, p.beta2, p.eps, p.wd, p.grad_scale, p.step, stream_of(c));
  sync(c);
}
inline void sum_squares(const ops::Ctx& c, const ops::SumSquares& p) {
  DeviceBuffer out(sizeof(double));
  LORA_KNS::sum_squares(p.n, p.x, out.as<double>(), stream_of(c));
  double s = 0;
  LORA_CUDA_CHECK(cudaMemcpyAsync(&s, out.as<double>(), sizeof s, cudaMemcpyDeviceToHost, stream_of(c)));
  sync(c);
  *p.out = s;
}

inline void rmsnorm_fwd(const ops::Ctx& c, const ops::RmsNormFwd& p) {
  LORA_KNS::rmsnorm_fwd(p.M, p.G, p.C, p.eps, p.x, p.ldx, p.w, p.y, p.ldy, p.rstd, stream_of(c));
  sync(c);
}
inline void rmsnorm_bwd(const ops::Ctx& c, const ops::RmsNormBwd& p) {
  LORA_KNS::rmsnorm_bwd(p.M, p.G, p.C, p.dy, p.lddy, p.x, p.ldx, p.w, p.rstd, p.dx, p.lddx, p.dw, stream_of(c));
  sync(c);
}
inline void rope(const ops::Ctx& c, const ops::Rope& p) {
  LORA_KNS::rope(p.M, p.H, p.D, p.x, p.ldx, p.y, p.ldy, p.pos, p.inv_freq, p.inverse, stream_of(c));
  sync(c);
}
inline void swiglu(const ops::Ctx& c, const ops::SwiGlu& p) {
  LORA_KNS::swiglu(p.M, p.F, p.gate, p.ldg, p.up, p.ldu, et(p.gu_dtype), p.y, p.ldy, stream_of(c));
  sync(c);
}
inline void swiglu_bwd(const ops::Ctx& c, const ops::SwiGluBwd& p) {
  LORA_KNS::swiglu_bwd(p.M, p.F, p.gate, p.ldg, p.up, p.ldu, et(p.gu_dtype), p.dy, p.lddy, p.dgate, p.lddg, p.dup, p.lddu, stream_of(c));
  sync(c);
}

// Honest support answers (the binding has already validated dtypes and shapes).
inline ops::Support supports(const std::string& op, const std::vector<DType>& dtypes, const std::vector<int64_t>& shape) {
  for (DType d : dtypes)
    if (d == DType::BF16P) return {false, "bf16p weights (the cpu backend's packed layout; keep the weight bf16 here)"};
  if ((op == "attention" || op == "attention_bwd" || op == "attention_ragged") && shape.size() >= 4 && shape[3] > kAttnMaxD) {
    return {false, "head dim " + std::to_string(shape[3]) + " > " + std::to_string(kAttnMaxD) +
                       " (the flash kernels keep a row of D/32 accumulators per lane, at most 4)"};
  }
  if ((op == "lora_fwd" || op == "lora_bwd") && shape.size() >= 5 && shape[4] > 65535) return {false, "more than 65535 LoRA groups"};
  if (op == "lora_segments" && shape.size() >= 4 && shape[3] > 65535) return {false, "more than 65535 LoRA groups"};
  if (op == "quantize" && dtypes.size() >= 2 && dtypes[1] != DType::I8 && dtypes[1] != DType::INT4 && dtypes[1] != DType::NF4) {
    return {false, std::string("quantize to ") + dtype_name(dtypes[1])};
  }
  return {};
}

// The OpTable over these kernels, shared by both builds: every op runs through
// Guard::run(ctx, call), the backend's own setup and error translation (emulator failures or
// CUDA errors into lora::Error), around a call of the op above. Expanded from op_list.h.
template <class Guard>
struct Guarded {
  template <class P, void (*F)(const ops::Ctx&, const P&)>
  static void op(const ops::Ctx& c, const P& p) {
    Guard::run(c, [&] { F(c, p); });
  }
};
template <class Guard>
ops::OpTable make_op_table(const char* name) {
#define LORA_KERNEL_ENTRY(field, Params, opname) &Guarded<Guard>::template op<ops::Params, &field>,
  return ops::OpTable{name, &supports, LORA_OP_LIST(LORA_KERNEL_ENTRY)};
#undef LORA_KERNEL_ENTRY
}

}  // namespace lora::LORA_KNS::table
