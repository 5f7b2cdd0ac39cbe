// Register-blocked peak loops for the benchmarks: 24 independent accumulators per thread, one
// instruction kind per loop (vdpbf16ps, vfmadd231ps, vpdpbusd), no memory traffic.
// GCC 12 reports false "uninitialized" warnings inside some intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "peak.h"

namespace lora::ops::cpu {

namespace {
template <int Kind>
double loop(int64_t iters) {
  __m512 f[24];
  __m512i q[24];
  for (int i = 0; i < 24; ++i) {
    f[i] = _mm512_set1_ps(1e-3f * static_cast<float>(i));
    q[i] = _mm512_set1_epi32(i);
  }
  const __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
  const __m512i ia = _mm512_set1_epi8(1), ib = _mm512_set1_epi8(2);
  const __m512bh ha = _mm512_cvtne2ps_pbh(a, a), hb = _mm512_cvtne2ps_pbh(b, b);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) {
      if constexpr (Kind == 0) f[i] = _mm512_dpbf16_ps(f[i], ha, hb);
      else if constexpr (Kind == 1) f[i] = _mm512_fmadd_ps(a, b, f[i]);
      else q[i] = _mm512_dpbusd_epi32(q[i], ia, ib);
    }
  }
  double s = 0;
  for (int i = 0; i < 24; ++i) {
    s += _mm512_reduce_add_ps(f[i]);
    s += _mm512_reduce_add_epi32(q[i]);
  }
  return s;
}
}  // namespace

double peak_loop(PeakKind kind, int64_t iters) {
  switch (kind) {
    case PeakKind::BF16: return loop<0>(iters);
    case PeakKind::F32: return loop<1>(iters);
    default: return loop<2>(iters);
  }
}

}  // namespace lora::ops::cpu
