// Vector math shared by the cpu backend's kernels (compiled with the AVX-512 flags of this folder).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace lora::ops::cpu {

// e^x for a vector: Cody-Waite reduction x = n·ln2 + r, |r| <= ln2/2, degree-6 polynomial (Cephes
// expf coefficients, ~1 ulp), 2^n applied with scalef (underflows to 0). -inf gives 0; NaN stays
// NaN (max_ps returns its second operand when either is NaN).
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.f), x);
  x = _mm512_min_ps(_mm512_set1_ps(88.7f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

// f32 -> bf16 bits in each dword's low half, exactly runtime/half.h's f32_to_bf16 (round to
// nearest even on the bits, denormals kept, NaN quieted) - vcvtneps2bf16 may differ from it on
// denormals, so code that must match a scalar-rounded packing uses this.
inline __m512i bf16_bits_like_scalar(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rne = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_or_epi32(rne, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

inline __mmask16 tail_mask16(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << n) - 1u);
}

// Keep bits of elements [i, i + min(16, valid)) from a bit mask, bit e%64 of word e/64 (i may sit
// anywhere in its word; the next word is read only when the valid elements reach into it).
inline __mmask16 bits16(const uint64_t* bits, int64_t i, int64_t valid = 16) {
  const uint64_t w = bits[i / 64] >> (i % 64);
  const int have = 64 - static_cast<int>(i % 64);
  return static_cast<__mmask16>(have >= 16 || valid <= have ? w : w | (bits[i / 64 + 1] << have));
}

// The same for 32 elements: two 16-bit halves, bits of elements [i, i + min(32, valid)).
inline __mmask32 bits32(const uint64_t* bits, int64_t i, int64_t valid = 32) {
  const __mmask32 lo = bits16(bits, i, valid);
  return valid > 16 ? lo | (static_cast<__mmask32>(bits16(bits, i + 16, valid - 16)) << 16) : lo;
}

// 16 bf16 values widened to f32 (exact).
inline __m512 bf16_to_ps(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

// 16 floats to bf16 exactly as half.h's f32_to_bf16 (RNE on the bits, subnormals kept, NaN made
// quiet by setting bit 6), unlike vcvtneps2bf16, which flushes subnormal inputs to zero.
inline __m256i bf16_exact(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(r, nan, q));
}

// out[0, n) = in[0, n) rounded to bf16 (RNE, as the GEMM's packing rounds).
inline void to_bf16_row(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask16(n - i);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, in + i));
    _mm256_mask_storeu_epi16(out + i, k, reinterpret_cast<const __m256i&>(v));
  }
}

// In-register transpose of a 16 x 16 block of floats: r[i][j] -> r[j][i].
inline void transpose16_ps(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + j]: rows 4g..4g+3 at element 4L + j of each 128-bit lane L.
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
    u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), w1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 w2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), w3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_f32x4(w0, w2, 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(w0, w2, 0xDD);
    r[4 + j] = _mm512_shuffle_f32x4(w1, w3, 0x88);
    r[12 + j] = _mm512_shuffle_f32x4(w1, w3, 0xDD);
  }
}

// dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols, in 16 x 16 register blocks; columns
// [rows, round16(rows)) of those dst rows are written as 0 (dst needs that padding).
inline void transpose_to(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const __mmask16 kc = tail_mask16(cols - c0);
      __m512 t[16];
      for (int64_t i = 0; i < 16; ++i) t[i] = r0 + i < rows ? _mm512_maskz_loadu_ps(kc, src + (r0 + i) * lds + c0) : _mm512_setzero_ps();
      transpose16_ps(t);
      const int64_t nc = cols - c0 < 16 ? cols - c0 : 16;
      for (int64_t j = 0; j < nc; ++j) _mm512_storeu_ps(dst + (c0 + j) * ldd + r0, t[j]);
    }
  }
}

}  // namespace lora::ops::cpu
