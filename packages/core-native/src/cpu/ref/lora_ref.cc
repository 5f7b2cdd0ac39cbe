// Scalar reference of the fused LoRA linear (see LoraFwd/LoraBwd in ops.h), f64 accumulation.
// Forward caches XA = drop(X)·Aᵀ; the backward regenerates the dropout mask from the seed.
#include <vector>

#include "../weight_scalar.h"
#include "ref.h"

namespace lora::ops::ref {

namespace {
double dropped_x(const Mat& x, const Dropout& d, int64_t K, int64_t m, int64_t k) {
  return static_cast<double>(mat_at(x, m, k)) * dropout_factor(d, d.offset + static_cast<uint64_t>(m * K + k));
}
}  // namespace

void lora_fwd(const Ctx&, const LoraFwd& p) {
  const int64_t GR = p.G * p.r, GN = p.G * p.N;
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t j = 0; j < GR; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < p.K; ++k) acc += dropped_x(p.x, p.drop, p.K, m, k) * p.a[j * p.K + k];
      p.xa[m * GR + j] = static_cast<float>(acc);
    }
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = 0; n < GN; ++n) {
      const int64_t g = n / p.N;
      double acc = p.bias ? p.bias[n] : 0.0;
      for (int64_t k = 0; k < p.K; ++k) acc += static_cast<double>(mat_at(p.x, m, k)) * weight_at(p.w, n, k);
      double low = 0.0;
      for (int64_t j = 0; j < p.r; ++j) low += static_cast<double>(p.xa[m * GR + g * p.r + j]) * p.b[n * p.r + j];
      store_act(p.y.data, p.y.dtype, m * p.y.ld + n, static_cast<float>(acc + p.scale * low));
    }
}

// Row by row, lora_fwd's arithmetic with the row's segment (no dropout), matmul_xwt's without one.
void lora_segments(const Ctx&, const LoraSegments& p) {
  const int64_t GN = p.G * p.N;
  std::vector<const LoraSegment*> seg_of(static_cast<size_t>(p.M), nullptr);
  for (int64_t i = 0; i < p.nseg; ++i)
    for (int64_t m = p.segs[i].start; m < p.segs[i].start + p.segs[i].len; ++m) seg_of[static_cast<size_t>(m)] = &p.segs[i];
  std::vector<float> xa;
  for (int64_t m = 0; m < p.M; ++m) {
    const LoraSegment* s = seg_of[static_cast<size_t>(m)];
    const int64_t GR = s ? p.G * s->r : 0;
    xa.assign(static_cast<size_t>(GR), 0.f);
    for (int64_t j = 0; j < GR; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < p.K; ++k) acc += static_cast<double>(mat_at(p.x, m, k)) * s->a[j * p.K + k];
      xa[static_cast<size_t>(j)] = static_cast<float>(acc);
    }
    for (int64_t n = 0; n < GN; ++n) {
      double acc = p.bias ? p.bias[n] : 0.0;
      for (int64_t k = 0; k < p.K; ++k) acc += static_cast<double>(mat_at(p.x, m, k)) * weight_at(p.w, n, k);
      if (s) {
        const int64_t g = n / p.N;
        double low = 0.0;
        for (int64_t j = 0; j < s->r; ++j) low += static_cast<double>(xa[static_cast<size_t>(g * s->r + j)]) * s->b[n * s->r + j];
        acc = acc + s->scale * low;
      }
      store_act(p.y.data, p.y.dtype, m * p.y.ld + n, static_cast<float>(acc));
    }
  }
}

// Gradient contract: dA, dB accumulate (+=); dX overwrites (+= when accumulate).
void lora_bwd(const Ctx&, const LoraBwd& p) {
  const int64_t GR = p.G * p.r, GN = p.G * p.N;
  std::vector<double> dxa(static_cast<size_t>(p.M * GR), 0.0);
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t j = 0; j < GR; ++j) {
      const int64_t g = j / p.r, jr = j % p.r;
      double acc = 0.0;
      for (int64_t n = g * p.N; n < (g + 1) * p.N; ++n) acc += static_cast<double>(mat_at(p.dy, m, n)) * p.b[n * p.r + jr];
      dxa[m * GR + j] = p.scale * acc;
    }
  if (p.db) {
    for (int64_t n = 0; n < GN; ++n) {
      const int64_t g = n / p.N;
      for (int64_t j = 0; j < p.r; ++j) {
        double acc = 0.0;
        for (int64_t m = 0; m < p.M; ++m) acc += static_cast<double>(mat_at(p.dy, m, n)) * p.xa[m * GR + g * p.r + j];
        p.db[n * p.r + j] += static_cast<float>(p.scale * acc);
      }
    }
  }
  if (p.da) {
    for (int64_t j = 0; j < GR; ++j)
      for (int64_t k = 0; k < p.K; ++k) {
        double acc = 0.0;
        for (int64_t m = 0; m < p.M; ++m) acc += dxa[m * GR + j] * dropped_x(p.x, p.drop, p.K, m, k);
        p.da[j * p.K + k] += static_cast<float>(acc);
      }
  }
  if (p.dx.data) {
    for (int64_t m = 0; m < p.M; ++m)
      for (int64_t k = 0; k < p.K; ++k) {
        double acc = 0.0;
        for (int64_t n = 0; n < GN; ++n) acc += static_cast<double>(mat_at(p.dy, m, n)) * weight_at(p.w, n, k);
        double low = 0.0;
        for (int64_t j = 0; j < GR; ++j) low += dxa[m * GR + j] * p.a[j * p.K + k];
        acc += low * dropout_factor(p.drop, p.drop.offset + static_cast<uint64_t>(m * p.K + k));
        if (p.accumulate) acc += load_act(p.dx.data, p.dx.dtype, m * p.dx.ld + k);
        store_act(p.dx.data, p.dx.dtype, m * p.dx.ld + k, static_cast<float>(acc));
      }
  }
}

}  // namespace lora::ops::ref
