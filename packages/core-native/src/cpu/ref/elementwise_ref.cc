// Elementwise ops: ReLU (forward caches nothing; the backward takes the output), residual add,
// scale, cast and dropout. Outputs may be the input itself (in place).
#include "../weight_scalar.h"
#include "ref.h"

namespace lora::ops::ref {

void relu(const Ctx&, const Relu& p) {
  if (p.bits)
    for (int64_t w = 0; w < (p.n + 63) / 64; ++w) p.bits[w] = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    const bool keep = p.x[i] > 0.f || p.x[i] != p.x[i];
    p.y[i] = keep ? p.x[i] : 0.f;
    if (p.bits && keep) p.bits[i / 64] |= uint64_t(1) << (i % 64);
  }
}

// Gradient contract: dX overwrites. dx = dy where y > 0 (NaN in y propagates), or where the
// forward's keep bit is set.
void relu_bwd(const Ctx&, const ReluBwd& p) {
  for (int64_t i = 0; i < p.n; ++i) {
    if (p.bits) p.dx[i] = (p.bits[i / 64] >> (i % 64)) & 1 ? p.dy[i] : 0.f;
    else p.dx[i] = p.y[i] > 0.f ? p.dy[i] : (p.y[i] != p.y[i] ? p.y[i] : 0.f);
  }
}

void add(const Ctx&, const Add& p) {
  for (int64_t i = 0; i < p.n; ++i) p.out[i] = p.a[i] + p.alpha * p.b[i];
}

void scale(const Ctx&, const Scale& p) {
  for (int64_t i = 0; i < p.n; ++i) p.out[i] = p.alpha * p.x[i];
}

void cast(const Ctx&, const Cast& p) {
  for (int64_t i = 0; i < p.n; ++i) store_act(p.dst, p.dst_dtype, i, load_act(p.src, p.src_dtype, i));
}

// The backward of dropout is this op on dY with the same seed/offset (dX overwrites).
void dropout(const Ctx&, const DropoutOp& p) {
  for (int64_t i = 0; i < p.n; ++i) {
    const float f = dropout_factor(p.drop, p.drop.offset + static_cast<uint64_t>(i));
    p.out[i] = f == 0.f ? 0.f : p.x[i] * f;
  }
}

}  // namespace lora::ops::ref
