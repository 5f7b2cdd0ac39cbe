// Fused LoRA linear forward/backward over G stacked groups (ops.h LoraFwd / LoraBwd), composed of
// tensor-core GEMM launches (gemm.cuh) that never materialise B·A:
//   forward:  XA = drop(X)·Aᵀ (dropout applied while loading X into shared memory; XA cached, f32)
//             Y  = X·Wᵀ + b   (W dequantized in the GEMM)
//             Y[:, g] += s·XA[:, g]·B_gᵀ        (one launch, grid.z = G, accumulating epilogue)
//   backward: dXA[:, g] = s·dY[:, g]·B_g         (scratch [M, G·r], grid.z = G)
//             dB_g += s·dY[:, g]ᵀ·XA[:, g]        (grid.z = G)
//             dA_g += dXA[:, g]ᵀ·drop(X)          (grid.z = G, mask regenerated on load)
//             dX = dY·W (+ dX), then dX += drop'(dXA·A) (mask applied in the epilogue)
//   segments: the forward over row segments with an adapter each (lora_segments, below)
#pragma once

#include "gemm.cuh"

namespace lora::LORA_KNS {

struct LoraShape {
  int64_t M, K, N, r, G;
};

inline void lora_check(const LoraShape& s, const char* op) {
  require(s.M >= 0 && s.K >= 1 && s.N >= 1 && s.r >= 1 && s.G >= 1 && s.G <= 65535, op, "bad sizes");
}

inline void lora_fwd(const LoraShape& s, const void* x, ET xt, int64_t ldx, const WeightView& w, const float* bias, const float* A,
                     const float* B, float scale, const DropoutArgs& drop, void* y, ET yt, int64_t ldy, float* xa, Stream st) {
  lora_check(s, "lora_fwd");
  require(w.rows == s.G * s.N && w.cols == s.K, "lora_fwd", "weight must be [G*N, K]");
  if (s.M == 0) return;
  const int64_t GR = s.G * s.r;
  Operand xd = act_rowk(x, xt, ldx);
  xd.drop = drop;
  xd.drop_ld = s.K;
  gemm("lora_fwd", s.M, GR, s.K, xd, weight_rowk(WeightView{A, nullptr, ET::F32, GR, s.K, 0}), out_mat(xa, ET::F32, GR, false), 1, st);
  // A bf16/f16 Y is summed in an f32 scratch and rounded once at the end (the base product and
  // the low-rank term added to an already rounded Y would round twice).
  const bool direct = yt == ET::F32;
  const int64_t GN = s.G * s.N;
  DeviceBuffer acc_buf(direct ? 0 : sizeof(float) * static_cast<size_t>(s.M * GN));
  void* yacc = direct ? y : acc_buf.as<float>();
  const ET acct = direct ? yt : ET::F32;
  const int64_t ldacc = direct ? ldy : GN;
  gemm("lora_fwd", s.M, GN, s.K, act_rowk(x, xt, ldx), weight_rowk(w), out_mat(yacc, acct, ldacc, false, 1.f, bias), 1, st);
  Operand a = act_rowk(xa, ET::F32, GR);
  a.zoff = s.r;
  Operand b = weight_rowk(WeightView{B, nullptr, ET::F32, s.N, s.r, 0});
  b.zoff = s.N * s.r;
  Epilogue e = out_mat(yacc, acct, ldacc, true, scale);
  e.zoff = s.N;
  gemm("lora_fwd", s.M, s.N, s.r, a, b, e, static_cast<int>(s.G), st);
  if (!direct) {
    LORA_LAUNCH(store_rows_kernel, dim3(grid_for(s.M * GN, kEwThreads)), dim3(kEwThreads), 0, st, s.M, GN, acc_buf.as<float>(), GN, y, yt, ldy);
    LORA_CHECK_LAUNCH();
  }
}

// Segmented LoRA forward (ops.h LoraSegments; serving, forward only): lora_fwd's launches with
// the base product once over every row and, per segment i, XA_i = X_i·A_iᵀ and Y_i += s_i·XA_i·B_iᵀ
// (grid.z = G) on its rows - the same products, operands and order as lora_fwd on those rows.
struct LoraSegArgs {
  int64_t start, len, r;
  const float* a;
  const float* b;
  float scale;
};

inline void lora_segments(int64_t M, int64_t K, int64_t N, int64_t G, const void* x, ET xt, int64_t ldx, const WeightView& w, const float* bias,
                          void* y, ET yt, int64_t ldy, const LoraSegArgs* segs, int64_t nseg, Stream st) {
  require(M >= 0 && K >= 1 && N >= 1 && G >= 1 && G <= 65535 && nseg >= 0, "lora_segments", "bad sizes");
  require(w.rows == G * N && w.cols == K, "lora_segments", "weight must be [G*N, K]");
  if (M == 0) return;
  const int64_t GN = G * N;
  const size_t xsize = xt == ET::F32 ? 4 : 2;
  int64_t xa_elems = 0;
  for (int64_t i = 0; i < nseg; ++i) {
    require(segs[i].r >= 1 && segs[i].len >= 1 && segs[i].start >= 0 && segs[i].start + segs[i].len <= M, "lora_segments", "bad segment");
    xa_elems += segs[i].len * G * segs[i].r;
  }
  DeviceBuffer xa_buf(sizeof(float) * static_cast<size_t>(xa_elems + 1));
  // A bf16/f16 Y is summed in f32 and rounded once, as lora_fwd does.
  const bool direct = yt == ET::F32;
  DeviceBuffer acc_buf(direct ? 0 : sizeof(float) * static_cast<size_t>(M * GN));
  void* yacc = direct ? y : acc_buf.as<float>();
  const ET acct = direct ? yt : ET::F32;
  const int64_t ldacc = direct ? ldy : GN;
  const size_t accsize = acct == ET::F32 ? 4 : 2;
  float* xa = xa_buf.as<float>();
  for (int64_t i = 0; i < nseg; ++i) {
    const int64_t GR = G * segs[i].r;
    const void* xs = static_cast<const char*>(x) + static_cast<size_t>(segs[i].start * ldx) * xsize;
    gemm("lora_segments", segs[i].len, GR, K, act_rowk(xs, xt, ldx), weight_rowk(WeightView{segs[i].a, nullptr, ET::F32, GR, K, 0}),
         out_mat(xa, ET::F32, GR, false), 1, st);
    xa += segs[i].len * GR;
  }
  gemm("lora_segments", M, GN, K, act_rowk(x, xt, ldx), weight_rowk(w), out_mat(yacc, acct, ldacc, false, 1.f, bias), 1, st);
  xa = xa_buf.as<float>();
  for (int64_t i = 0; i < nseg; ++i) {
    const LoraSegArgs& sg = segs[i];
    const int64_t GR = G * sg.r;
    Operand a = act_rowk(xa, ET::F32, GR);
    a.zoff = sg.r;
    Operand b = weight_rowk(WeightView{sg.b, nullptr, ET::F32, N, sg.r, 0});
    b.zoff = N * sg.r;
    Epilogue e = out_mat(static_cast<char*>(yacc) + static_cast<size_t>(sg.start * ldacc) * accsize, acct, ldacc, true, sg.scale);
    e.zoff = N;
    gemm("lora_segments", sg.len, N, sg.r, a, b, e, static_cast<int>(G), st);
    xa += sg.len * GR;
  }
  if (!direct) {
    LORA_LAUNCH(store_rows_kernel, dim3(grid_for(M * GN, kEwThreads)), dim3(kEwThreads), 0, st, M, GN, acc_buf.as<float>(), GN, y, yt, ldy);
    LORA_CHECK_LAUNCH();
  }
}

inline void lora_bwd(const LoraShape& s, const void* dy, ET dyt, int64_t lddy, const void* x, ET xt, int64_t ldx, const WeightView& w,
                     const float* A, const float* B, const float* xa, float scale, const DropoutArgs& drop, void* dx, ET dxt,
                     int64_t lddx, bool accumulate, float* dA, float* dB, Stream st) {
  lora_check(s, "lora_bwd");
  require(w.rows == s.G * s.N && w.cols == s.K, "lora_bwd", "weight must be [G*N, K]");
  if (s.M == 0) return;
  const int64_t GR = s.G * s.r;
  const int Z = static_cast<int>(s.G);
  DeviceBuffer dxa_buf((dA || dx) ? sizeof(float) * static_cast<size_t>(s.M * GR) : 0);
  float* dxa = dxa_buf.as<float>();
  if (dA || dx) {
    Operand a = act_rowk(dy, dyt, lddy);
    a.zoff = s.N;
    Operand b = weight_krow(WeightView{B, nullptr, ET::F32, s.N, s.r, 0});
    b.zoff = s.N * s.r;
    Epilogue e = out_mat(dxa, ET::F32, GR, false, scale);
    e.zoff = s.r;
    gemm("lora_bwd", s.M, s.r, s.N, a, b, e, Z, st);
  }
  if (dB) {
    Operand a = act_krow(dy, dyt, lddy);
    a.zoff = s.N;
    Operand b = act_krow(xa, ET::F32, GR);
    b.zoff = s.r;
    Epilogue e = out_mat(dB, ET::F32, s.r, true, scale);
    e.zoff = s.N * s.r;
    gemm("lora_bwd", s.N, s.r, s.M, a, b, e, Z, st);
  }
  if (dA) {
    Operand a = act_krow(dxa, ET::F32, GR);
    a.zoff = s.r;
    Operand b = act_krow(x, xt, ldx);
    b.drop = drop;
    b.drop_ld = s.K;
    Epilogue e = out_mat(dA, ET::F32, s.K, true);
    e.zoff = s.r * s.K;
    gemm("lora_bwd", s.r, s.K, s.M, a, b, e, Z, st);
  }
  if (dx) {
    gemm("lora_bwd", s.M, s.K, s.G * s.N, act_rowk(dy, dyt, lddy), weight_krow(w), out_mat(dx, dxt, lddx, accumulate), 1, st);
    Epilogue e = out_mat(dx, dxt, lddx, true);
    e.drop = drop;
    e.drop_ld = s.K;
    gemm("lora_bwd", s.M, s.K, GR, act_rowk(dxa, ET::F32, GR), weight_krow(WeightView{A, nullptr, ET::F32, GR, s.K, 0}), e, 1, st);
  }
}

}  // namespace lora::LORA_KNS
