// Blocked GEMM for the cpu backend (see gemm.h). Register tile MR = 6 rows x NP*16 columns
// (NP <= 4 zmm), bf16 pairs through vdpbf16ps or f32 through FMA; B is packed per (KC x NC)
// block into micro-panels [k-pair][NP*16] while decoding its dtype (the NF4/int4 LUT decode
// happens here, per panel); A is packed per (MC x KC) block into [k-pair][MR].
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../../runtime/half.h"
#include "../thread_pool.h"
#include "../weight_scalar.h"

namespace lora::ops::cpu {

namespace {

constexpr int MR = 6;
constexpr int64_t KC = 256;
constexpr int64_t MC = 96;
constexpr int64_t NC_MAX = 512;

// 64-byte aligned growable scratch, one set per thread.
struct Buf {
  void* p = nullptr;
  size_t cap = 0;
  ~Buf() { std::free(p); }
  template <typename T> T* get(size_t n) {
    const size_t bytes = ((n * sizeof(T) + 63) / 64) * 64 + 64;
    if (bytes > cap) {
      std::free(p);
      p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
      cap = bytes;
    }
    return static_cast<T*>(p);
  }
};
struct Scratch {
  Buf apack, bpack, fa, fb, tmp, apack_tmp;
};
thread_local Scratch t_scratch;

}  // namespace

void apply_dropout(float* out, int64_t len, const Dropout& d, uint64_t first) {
  if (d.p >= 1.f) {
    std::memset(out, 0, static_cast<size_t>(len) * 4);
    return;
  }
  const uint32_t thr = dropout_threshold(d.p);
  const float keep = 1.f / (1.f - d.p);
  uint32_t w[4];
  uint64_t have = ~uint64_t(0);
  for (int64_t i = 0; i < len; ++i) {
    const uint64_t e = d.offset + first + static_cast<uint64_t>(i);
    if ((e >> 2) != have) {
      have = e >> 2;
      philox4x32_10(d.seed, have, w);
    }
    out[i] = w[e & 3] >= thr ? out[i] * keep : 0.f;
  }
}

namespace {

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u); }

void decode_packed4(const Src& s, int64_t e, int64_t len, float* out) {
  const uint8_t* p = static_cast<const uint8_t*>(s.data);
  float lut[16];
  for (int i = 0; i < 16; ++i) lut[i] = s.dtype == DType::NF4 ? kNF4Table[i] : int4_value(static_cast<unsigned>(i));
  const __m512 vlut = _mm512_loadu_ps(lut);
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  int64_t i = 0;
  while (i < len) {
    const int64_t blk = e / s.block;
    const int64_t seg_end = std::min(len, i + ((blk + 1) * s.block - e));
    const float sc = s.scales[blk];
    if (e & 1) {
      out[i++] = lut[nibble_at(p, e++)] * sc;
      continue;
    }
    const __m512 table = _mm512_mul_ps(vlut, _mm512_set1_ps(sc));
    for (; i + 32 <= seg_end; i += 32, e += 32) {
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + (e >> 1))));
      const __m512 fh = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
      const __m512 fl = _mm512_permutexvar_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(15)), table);
      _mm512_storeu_ps(out + i, _mm512_permutex2var_ps(fh, lo_idx, fl));
      _mm512_storeu_ps(out + i + 16, _mm512_permutex2var_ps(fh, hi_idx, fl));
    }
    for (; i < seg_end; ++i, ++e) out[i] = lut[nibble_at(p, e)] * sc;
  }
}

}  // namespace

void decode_row(const Src& s, int64_t row, int64_t c0, int64_t len, float* out) {
  const int64_t base = row * s.ld + c0;
  int64_t i = 0;
  switch (s.dtype) {
    case DType::F32: {
      const float* p = static_cast<const float*>(s.data) + base;
      for (; i < len; i += 16) _mm512_mask_storeu_ps(out + i, tail_mask(len - i), _mm512_maskz_loadu_ps(tail_mask(len - i), p + i));
      break;
    }
    case DType::BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(s.data) + base;
      for (; i < len; i += 16) {
        const __mmask16 k = tail_mask(len - i);
        const __m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p + i)), 16);
        _mm512_mask_storeu_ps(out + i, k, _mm512_castsi512_ps(v));
      }
      break;
    }
    case DType::F16: {
      const uint16_t* p = static_cast<const uint16_t*>(s.data) + base;
      for (; i < len; i += 16) {
        const __mmask16 k = tail_mask(len - i);
        _mm512_mask_storeu_ps(out + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p + i)));
      }
      break;
    }
    case DType::I8: {
      const int8_t* p = static_cast<const int8_t*>(s.data) + base;
      const __m512 f = _mm512_set1_ps(s.scales[row] / 127.f);
      for (; i < len; i += 16) {
        const __mmask16 k = tail_mask(len - i);
        const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, p + i)));
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(v, f));
      }
      break;
    }
    case DType::INT4:
    case DType::NF4: decode_packed4(s, base, len, out); break;
    default: std::memset(out, 0, static_cast<size_t>(len) * 4); break;
  }
  if (s.scale != 1.f) {
    const __m512 f = _mm512_set1_ps(s.scale);
    for (i = 0; i < len; i += 16) {
      const __mmask16 k = tail_mask(len - i);
      _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, out + i), f));
    }
  }
  if (s.drop.active()) apply_dropout(out, len, s.drop, static_cast<uint64_t>(row * s.drop_ld + c0));
}

Src weight_src(const Weight& w, bool k_major) {
  Src s;
  s.dtype = w.dtype;
  s.data = w.data;
  s.scales = w.scales;
  s.block = w.block;
  s.ld = w.cols;
  s.k_major = k_major;
  return s;
}

Src mat_src(const Mat& m, bool k_major) {
  Src s;
  s.dtype = m.dtype;
  s.data = m.data;
  s.ld = m.ld;
  s.k_major = k_major;
  return s;
}

Precision precision_for(DType act, DType w) {
  const bool narrow = act == DType::BF16 || w == DType::BF16 || w == DType::I8 || dtype_is_packed4(w);
  return narrow ? Precision::BF16 : Precision::F32;
}

namespace {

// Converts 2*np floats (np pairs) to bf16 pair dwords (element 2j in the low half).
inline void to_pairs(const float* f, int64_t np, uint32_t* out) {
  int64_t j = 0;
  for (; j + 16 <= np; j += 16) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(f + 2 * j + 16), _mm512_loadu_ps(f + 2 * j));
    _mm512_storeu_si512(out + j, reinterpret_cast<const __m512i&>(v));
  }
  for (; j < np; ++j) out[j] = static_cast<uint32_t>(f32_to_bf16(f[2 * j])) | (static_cast<uint32_t>(f32_to_bf16(f[2 * j + 1])) << 16);
}

// Interleaves two rows of 16 floats into 16 bf16 pair dwords (a in the low half).
inline __m512i pair_rows(__m512 a, __m512 b) {
  const __m256bh ha = _mm512_cvtneps_pbh(a), hb = _mm512_cvtneps_pbh(b);
  const __m512i ia = _mm512_cvtepu16_epi32(reinterpret_cast<const __m256i&>(ha));
  const __m512i ib = _mm512_cvtepu16_epi32(reinterpret_cast<const __m256i&>(hb));
  return _mm512_or_si512(ia, _mm512_slli_epi32(ib, 16));
}

struct Panel {
  int64_t n0;   // first column
  int width;    // 16 * np
  int64_t off;  // element offset of the panel in the packed buffer
};

// Packs B for columns [n0, n0+nc) and reduction [k0, k0+kc). Element unit: dword (bf16 pair
// or f32). Each panel holds kk rows (k-pairs for bf16, k for f32) of `width` elements.
void pack_b(const Src& b, Precision prec, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
            const std::vector<Panel>& panels, uint32_t* dst) {
  Scratch& s = t_scratch;
  const bool bf = prec == Precision::BF16;
  const int64_t kk = bf ? (kc + 1) / 2 : kc;
  if (!b.k_major) {
    float* f = s.tmp.get<float>(static_cast<size_t>(kc + 2));
    uint32_t* d = s.fa.get<uint32_t>(static_cast<size_t>(kk + 1));
    for (const Panel& p : panels) {
      uint32_t* out = dst + p.off;
      for (int c = 0; c < p.width; ++c) {
        const int64_t n = p.n0 + c;
        if (n >= n0 + nc) {
          for (int64_t r = 0; r < kk; ++r) out[r * p.width + c] = 0;
          continue;
        }
        decode_row(b, n, k0, kc, f);
        f[kc] = 0.f;
        const uint32_t* src;
        if (bf) {
          to_pairs(f, kk, d);
          src = d;
        } else {
          src = reinterpret_cast<const uint32_t*>(f);
        }
        for (int64_t r = 0; r < kk; ++r) out[r * p.width + c] = src[r];
      }
    }
    return;
  }
  // k-major: stored rows are k; decode [n0, n0+nc) of one or two stored rows at a time.
  float* fa = s.fa.get<float>(static_cast<size_t>(nc + 16));
  float* fb = s.fb.get<float>(static_cast<size_t>(nc + 16));
  for (int64_t r = 0; r < kk; ++r) {
    const int64_t ka = k0 + (bf ? 2 * r : r);
    decode_row(b, ka, n0, nc, fa);
    if (bf) {
      if (ka + 1 < k0 + kc) decode_row(b, ka + 1, n0, nc, fb);
      else std::memset(fb, 0, static_cast<size_t>(nc) * 4);
    }
    for (const Panel& p : panels) {
      uint32_t* out = dst + p.off + r * p.width;
      for (int c = 0; c < p.width; c += 16) {
        const int64_t j = p.n0 - n0 + c;
        const __mmask16 k = tail_mask(std::max<int64_t>(0, nc - j));
        const __m512 va = _mm512_maskz_loadu_ps(k, fa + j);
        if (bf) _mm512_storeu_si512(out + c, pair_rows(va, _mm512_maskz_loadu_ps(k, fb + j)));
        else _mm512_storeu_ps(out + c, va);
      }
    }
  }
}

// Packs A rows [m0, m0+mc) (mc rounded up to MR with zeros), reduction [k0, k0+kc), into
// micro-panels [kk][MR].
void pack_a(const Src& a, Precision prec, int64_t k0, int64_t kc, int64_t m0, int64_t mc, int64_t M, uint32_t* dst) {
  Scratch& s = t_scratch;
  const bool bf = prec == Precision::BF16;
  const int64_t kk = bf ? (kc + 1) / 2 : kc;
  const int64_t groups = (mc + MR - 1) / MR;
  if (!a.k_major) {
    float* f = s.tmp.get<float>(static_cast<size_t>(kc + 2));
    uint32_t* d = s.fb.get<uint32_t>(static_cast<size_t>(kk + 1));
    for (int64_t i = 0; i < groups * MR; ++i) {
      uint32_t* out = dst + (i / MR) * kk * MR + (i % MR);
      const int64_t m = m0 + i;
      if (i >= mc || m >= M) {
        for (int64_t r = 0; r < kk; ++r) out[r * MR] = 0;
        continue;
      }
      decode_row(a, m, k0, kc, f);
      f[kc] = 0.f;
      const uint32_t* src = reinterpret_cast<const uint32_t*>(f);
      if (bf) {
        to_pairs(f, kk, d);
        src = d;
      }
      for (int64_t r = 0; r < kk; ++r) out[r * MR] = src[r];
    }
    return;
  }
  float* fa = s.tmp.get<float>(static_cast<size_t>(groups * MR + 16));
  float* fb = s.fb.get<float>(static_cast<size_t>(groups * MR + 16));
  std::memset(fa, 0, static_cast<size_t>(groups * MR) * 4);
  std::memset(fb, 0, static_cast<size_t>(groups * MR) * 4);
  const int64_t valid = std::min(mc, M - m0);
  uint32_t* pairs = s.apack_tmp.get<uint32_t>(static_cast<size_t>(groups * MR + 16));
  for (int64_t r = 0; r < kk; ++r) {
    const int64_t ka = k0 + (bf ? 2 * r : r);
    decode_row(a, ka, m0, valid, fa);
    if (bf && ka + 1 < k0 + kc) decode_row(a, ka + 1, m0, valid, fb);
    else if (bf) std::memset(fb, 0, static_cast<size_t>(valid) * 4);
    for (int64_t i = 0; i < groups * MR; i += 16) {
      const __mmask16 k = tail_mask(valid - i > 0 ? valid - i : 0);
      const __m512 va = _mm512_maskz_loadu_ps(k, fa + i);
      if (bf) _mm512_storeu_si512(pairs + i, pair_rows(va, _mm512_maskz_loadu_ps(k, fb + i)));
      else _mm512_storeu_ps(reinterpret_cast<float*>(pairs + i), va);
    }
    for (int64_t g = 0; g < groups; ++g) std::memcpy(dst + g * kk * MR + r * MR, pairs + g * MR, MR * 4);
  }
}

using Kernel = void (*)(int64_t kk, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, int cols, bool overwrite, const float* bias);

template <int R, int NP, bool BF>
void kernel(int64_t kk, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, int cols, bool overwrite, const float* bias) {
  __m512 acc[R][NP];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t r = 0; r < kk; ++r) {
    __m512i bv[NP];
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) bv[j] = _mm512_loadu_si512(b + r * NP * 16 + j * 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      if constexpr (BF) {
        const __m512i av = _mm512_set1_epi32(static_cast<int>(a[r * MR + i]));
#pragma GCC unroll 4
        for (int j = 0; j < NP; ++j)
          acc[i][j] = _mm512_dpbf16_ps(acc[i][j], reinterpret_cast<const __m512bh&>(av), reinterpret_cast<const __m512bh&>(bv[j]));
      } else {
        float af;
        std::memcpy(&af, a + r * MR + i, 4);
        const __m512 av = _mm512_set1_ps(af);
#pragma GCC unroll 4
        for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_fmadd_ps(av, _mm512_castsi512_ps(bv[j]), acc[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) {
      const int left = cols - 16 * j;
      if (left <= 0) break;
      const __mmask16 k = tail_mask(left);
      float* cp = c + i * ldc + 16 * j;
      __m512 v = acc[i][j];
      if (!overwrite) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, cp));
      if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + 16 * j));
      _mm512_mask_storeu_ps(cp, k, v);
    }
}

template <bool BF>
struct KernelTable {
  Kernel k[MR][4];
  KernelTable() {
    fill<1>();
    fill<2>();
    fill<3>();
    fill<4>();
    fill<5>();
    fill<6>();
  }
  template <int R> void fill() {
    k[R - 1][0] = &kernel<R, 1, BF>;
    k[R - 1][1] = &kernel<R, 2, BF>;
    k[R - 1][2] = &kernel<R, 3, BF>;
    k[R - 1][3] = &kernel<R, 4, BF>;
  }
};

const KernelTable<true> kBf16Kernels;
const KernelTable<false> kF32Kernels;

}  // namespace

void gemm(const Ctx& ctx, int64_t M, int64_t N, const std::vector<Segment>& segs, float* C, int64_t ldc,
          bool accumulate, const float* bias, Precision prec) {
  if (M <= 0 || N <= 0) return;
  int64_t Ktot = 0;
  for (const Segment& s : segs) Ktot += s.K;
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  auto for_tasks = [&](int64_t n, const std::function<void(int64_t, int)>& fn) {
    if (ctx.pool) ctx.pool->parallel_for(n, fn);
    else for (int64_t t = 0; t < n; ++t) fn(t, 0);
  };
  if (Ktot == 0) {
    if (!accumulate || bias) {
      for_tasks(M, [&](int64_t m, int) {
        for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = (accumulate ? C[m * ldc + n] : 0.f) + (bias ? bias[n] : 0.f);
      });
    }
    return;
  }
  // Column tasks: a multiple of the thread count, each at most NC_MAX wide (multiple of 16).
  int64_t n_tasks = threads * std::max<int64_t>(1, (N + threads * NC_MAX - 1) / (threads * NC_MAX));
  int64_t nc = (N + n_tasks - 1) / n_tasks;
  nc = std::max<int64_t>(16, (nc + 15) / 16 * 16);
  n_tasks = (N + nc - 1) / nc;
  int64_t m_tasks = 1;
  if (n_tasks < 2 * threads) m_tasks = std::max<int64_t>(1, std::min<int64_t>((2 * threads + n_tasks - 1) / n_tasks, M / (4 * MR)));
  const int64_t mrows = ((M + m_tasks - 1) / m_tasks + MR - 1) / MR * MR;
  m_tasks = (M + mrows - 1) / mrows;
  const bool bf = prec == Precision::BF16;
  const auto& table = bf ? kBf16Kernels.k : kF32Kernels.k;

  for_tasks(n_tasks * m_tasks, [&](int64_t task, int) {
    const int64_t tn = task % n_tasks, tm = task / n_tasks;
    const int64_t n0 = tn * nc, ncols = std::min(nc, N - n0);
    const int64_t mb = tm * mrows, me = std::min(M, mb + mrows);
    std::vector<Panel> panels;
    int64_t off = 0;
    const int64_t kk_max = bf ? (KC + 1) / 2 : KC;
    for (int64_t pn = n0; pn < n0 + ncols; pn += 64) {
      const int np = static_cast<int>(std::min<int64_t>(4, (n0 + ncols - pn + 15) / 16));
      panels.push_back({pn, np * 16, off});
      off += kk_max * np * 16;
    }
    Scratch& s = t_scratch;
    uint32_t* bp = s.bpack.get<uint32_t>(static_cast<size_t>(off));
    uint32_t* ap = s.apack.get<uint32_t>(static_cast<size_t>((MC + MR) * kk_max));
    bool first = true;
    for (const Segment& seg : segs) {
      for (int64_t k0 = 0; k0 < seg.K; k0 += KC) {
        const int64_t kc = std::min(KC, seg.K - k0);
        const int64_t kk = bf ? (kc + 1) / 2 : kc;
        // Panels were laid out for kk_max rows; repack offsets for this kc.
        std::vector<Panel> pk = panels;
        int64_t o = 0;
        for (Panel& p : pk) { p.off = o; o += kk * p.width; }
        pack_b(seg.b, prec, k0, kc, n0, ncols, pk, bp);
        const bool overwrite = first && !accumulate;
        const float* bias_now = first ? bias : nullptr;
        for (int64_t m0 = mb; m0 < me; m0 += MC) {
          const int64_t mc = std::min(MC, me - m0);
          pack_a(seg.a, prec, k0, kc, m0, mc, M, ap);
          for (const Panel& p : pk) {
            const int cols = static_cast<int>(std::min<int64_t>(p.width, n0 + ncols - p.n0));
            const int np = p.width / 16;
            for (int64_t i = 0; i < mc; i += MR) {
              const int rows = static_cast<int>(std::min<int64_t>(MR, mc - i));
              table[rows - 1][np - 1](kk, ap + (i / MR) * kk * MR, bp + p.off, C + (m0 + i) * ldc + p.n0, ldc, cols,
                                      overwrite, bias_now ? bias_now + p.n0 : nullptr);
            }
          }
        }
        first = false;
      }
    }
  });
}

}  // namespace lora::ops::cpu

namespace lora::ops::cpu {

Weight weight_rows(const Weight& w, int64_t row0, int64_t rows) {
  Weight r = w;
  r.rows = rows;
  const int64_t e = row0 * w.cols;
  switch (w.dtype) {
    case DType::F32: r.data = static_cast<const float*>(w.data) + e; break;
    case DType::F16:
    case DType::BF16: r.data = static_cast<const uint16_t*>(w.data) + e; break;
    case DType::I8:
      r.data = static_cast<const int8_t*>(w.data) + e;
      r.scales = w.scales + row0;
      break;
    default:
      r.data = static_cast<const uint8_t*>(w.data) + e / 2;
      r.scales = w.scales + e / w.block;
      break;
  }
  return r;
}

}  // namespace lora::ops::cpu
