// Blocked GEMM for the cpu backend (see gemm.h). Register tile MR = 6 rows x NP*16 columns
// (NP <= 4 zmm), bf16 pairs through vdpbf16ps or f32 through FMA.
// Each call first packs its operands once, in parallel: B into 64-column panels [k-pair][64]
// (decoding its dtype - the NF4/int4 LUT decode happens here - with 16x16 dword transposes for
// row-major weights), A into k-blocks of contiguous rows [KC/2 pairs] (or not at all when it is
// already bf16 pairs / f32 rows that the kernel can broadcast from directly). Then threads take
// (MC x NC) tiles of C; a tile's C stays in L2 across the k-blocks, a KC x 64 B panel in L2.
// GCC 12 reports false "uninitialized" warnings inside the masked-load intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>

#include "../../runtime/half.h"
#include "../thread_pool.h"
#include "../weight_scalar.h"
#include "par.h"
#include "vmath.h"

namespace lora::ops::cpu {

namespace {

constexpr int MR = 6;
constexpr int64_t NR = 64;  // panel width (4 zmm)

// Blocking, tuned for a Zen 5 core (48 KiB L1d, 1 MiB L2). KC = 4096 k (2048 bf16 pairs; 1024 k
// on the f32 path, the same bytes): the accumulators stay in registers over the whole reduction of
// every OPT linear, so a micro-tile of C is loaded and stored once, not once per 256 k; its B
// panel (up to 512 KiB) streams from L2, which the vdpbf16ps rate (one 256-byte B row per 12
// cycles) leaves far from saturated. A standalone micro-kernel measured 91 % of the core's peak at
// 128 pairs per call, 97 % at 256 and 98 % at 512 (the prologue/epilogue's fixed cost); the GEMM
// on one thread went from 486 to 523-538 GFLOP/s (KC 256 -> 1024..4096, and the C prefetch
// prologue dropped: it cost ~2 %), on two threads K = 3072/4096 gained 1-3 % more from KC 1024 to
// 4096. MC x NC = 144 x 256 keeps the A block and a B panel in L2. Direct A (bf16 rows used in
// place) beat copying A into k-blocks by 3-30 % at K = 4096. On this shared machine the MC/NC
// choices around that point (72..216 x 192..512) are within its ±3 % noise of each other.
// LORA_GEMM_KC / _MC / _NC override them (tuning runs); LORA_GEMM_DIRECT_A=0 forces A packing.
struct Tune {
  int64_t kc = 4096, mc = 144, nc = 256;
  int direct = -1;
};
int64_t env_int(const char* name, int64_t dflt) {
  const char* s = std::getenv(name);
  if (!s || !*s) return dflt;
  const long long v = std::atoll(s);
  return v > 0 ? v : dflt;
}
const Tune& tune() {
  static const Tune t = [] {
    Tune r;
    r.kc = std::max<int64_t>(16, env_int("LORA_GEMM_KC", r.kc) / 16 * 16);
    r.mc = std::max<int64_t>(MR, env_int("LORA_GEMM_MC", r.mc) / MR * MR);
    r.nc = std::max<int64_t>(NR, env_int("LORA_GEMM_NC", r.nc) / NR * NR);
    if (const char* s = std::getenv("LORA_GEMM_DIRECT_A")) r.direct = std::atoi(s) ? 1 : 0;
    return r;
  }();
  return t;
}

// 64-byte aligned growable scratch.
struct Buf {
  void* p = nullptr;
  size_t cap = 0;
  Buf() = default;
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
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
// Per-thread temporaries of the packing jobs.
struct Scratch {
  Buf f, g, pairs;
};
thread_local Scratch t_scratch;
// The packed operands of one gemm call, owned by the calling thread (a gemm nested inside another
// one's task gets its own).
struct PackBufs {
  Buf a, b;
  bool busy = false;
};
thread_local PackBufs t_pack;

// ---- Philox4x32-10, 16 counters per vector ----

// hi/lo 32 bits of m * c per lane (m a broadcast constant).
inline void mulhilo(__m512i m, __m512i c, __m512i& hi, __m512i& lo) {
  const __m512i pe = _mm512_mul_epu32(m, c);                         // lanes 0,2,..: 64-bit products
  const __m512i po = _mm512_mul_epu32(m, _mm512_srli_epi64(c, 32));  // lanes 1,3,..
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
  lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
}

// Keep bits of the 64 elements e0 .. e0+63 (e0 % 4 == 0): counters e0/4 + 0..15, bit 4j + w
// from word w of counter j (the mapping of ops.h).
__attribute__((target("bmi2"))) uint64_t keep_bits64(uint64_t seed, uint64_t e0, uint32_t thr) {
  const uint64_t ctr = e0 >> 2;
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i lo = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(ctr)));
  const __m512i hi = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(ctr >> 32)));
  __m512i c0 = _mm512_add_epi32(lo, iota);
  const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, lo);
  __m512i c1 = _mm512_mask_add_epi32(hi, carry, hi, _mm512_set1_epi32(1));
  __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u)), m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#pragma GCC unroll 10
  for (int round = 0; round < 10; ++round) {
    __m512i hi0, lo0, hi1, lo1;
    mulhilo(m0, c0, hi0, lo0);
    mulhilo(m1, c2, hi1, lo1);
    // 0x96: a ^ b ^ c.
    c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32(static_cast<int>(k0)), 0x96);
    c1 = lo1;
    c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32(static_cast<int>(k1)), 0x96);
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const __m512i t = _mm512_set1_epi32(static_cast<int>(thr));
  const uint64_t b0 = _mm512_cmpge_epu32_mask(c0, t), b1 = _mm512_cmpge_epu32_mask(c1, t);
  const uint64_t b2 = _mm512_cmpge_epu32_mask(c2, t), b3 = _mm512_cmpge_epu32_mask(c3, t);
  return _pdep_u64(b0, 0x1111111111111111ull) | _pdep_u64(b1, 0x2222222222222222ull) |
         _pdep_u64(b2, 0x4444444444444444ull) | _pdep_u64(b3, 0x8888888888888888ull);
}


// out[0, n) (n <= 64) *= keep where the bit of m is set, else 0.
inline void mask_apply64(float* out, int64_t n, uint64_t m, __m512 keep) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask16(n - i);
    const __mmask16 kb = static_cast<__mmask16>(m >> i);
    _mm512_mask_storeu_ps(out + i, k, _mm512_maskz_mul_ps(kb, _mm512_maskz_loadu_ps(k, out + i), keep));
  }
}

}  // namespace

void apply_dropout(float* out, int64_t len, const Dropout& d, uint64_t first) {
  if (d.p >= 1.f) {
    std::memset(out, 0, static_cast<size_t>(len) * 4);
    return;
  }
  const uint32_t thr = dropout_threshold(d.p);
  const __m512 keep = _mm512_set1_ps(1.f / (1.f - d.p));
  uint64_t e = d.offset + first;
  int64_t i = 0;
  while (i < len) {
    const uint64_t e0 = e & ~uint64_t(3);
    const int s = static_cast<int>(e - e0);
    const int64_t n = std::min<int64_t>(64 - s, len - i);
    mask_apply64(out + i, n, keep_bits64(d.seed, e0, thr) >> s, keep);
    i += n;
    e += static_cast<uint64_t>(n);
  }
}

void dropout_bits(const Dropout& d, uint64_t first, int64_t len, uint64_t* bits) {
  const int64_t words = (len + 63) / 64;
  if (d.p >= 1.f || !d.active()) {
    const uint64_t fill = d.active() ? 0 : ~uint64_t(0);
    for (int64_t w = 0; w < words; ++w) bits[w] = fill;
    bits[words] = 0;
    return;
  }
  const uint32_t thr = dropout_threshold(d.p);
  const uint64_t e = d.offset + first;
  const uint64_t e0 = e & ~uint64_t(3);
  const int s = static_cast<int>(e - e0);
  // Word w holds elements e + 64w .. : windows at e0 + 64w (aligned) shifted by s.
  uint64_t cur = keep_bits64(d.seed, e0, thr);
  for (int64_t w = 0; w < words; ++w) {
    const uint64_t next = (s || w + 1 < words) ? keep_bits64(d.seed, e0 + 64 * static_cast<uint64_t>(w + 1), thr) : 0;
    bits[w] = s ? (cur >> s) | (next << (64 - s)) : cur;
    cur = next;
  }
  const int64_t tail = len % 64;
  if (tail) bits[words - 1] &= (uint64_t(1) << tail) - 1;
  bits[words] = 0;
}

void apply_mask_bits(float* out, int64_t len, const uint64_t* bits, uint64_t bit0, float keep) {
  const __m512 kv = _mm512_set1_ps(keep);
  for (int64_t i = 0; i < len; i += 64) {
    const uint64_t b = bit0 + static_cast<uint64_t>(i);
    const uint64_t w = b >> 6;
    const int s = static_cast<int>(b & 63);
    const uint64_t m = s ? (bits[w] >> s) | (bits[w + 1] << (64 - s)) : bits[w];
    mask_apply64(out + i, std::min<int64_t>(64, len - i), m, kv);
  }
}

namespace {


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
      for (; i < len; i += 16) _mm512_mask_storeu_ps(out + i, tail_mask16(len - i), _mm512_maskz_loadu_ps(tail_mask16(len - i), p + i));
      break;
    }
    case DType::BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(s.data) + base;
      for (; i < len; i += 16) {
        const __mmask16 k = tail_mask16(len - i);
        _mm512_mask_storeu_ps(out + i, k, bf16_to_ps(_mm256_maskz_loadu_epi16(k, p + i)));
      }
      break;
    }
    case DType::F16: {
      const uint16_t* p = static_cast<const uint16_t*>(s.data) + base;
      for (; i < len; i += 16) {
        const __mmask16 k = tail_mask16(len - i);
        _mm512_mask_storeu_ps(out + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p + i)));
      }
      break;
    }
    case DType::I8: {
      const int8_t* p = static_cast<const int8_t*>(s.data) + base;
      const __m512 f = _mm512_set1_ps(s.scales[row] / 127.f);
      for (; i < len; i += 16) {
        const __mmask16 k = tail_mask16(len - i);
        const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, p + i)));
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(v, f));
      }
      break;
    }
    case DType::INT4:
    case DType::NF4: decode_packed4(s, base, len, out); break;
    case DType::BF16P: {
      // Row `row` of a [rows, ld] bf16p weight gathered from its panel: one pair per k pair. Only
      // the generic paths (an f32-precision decode) come here; packing reads the panels whole.
      const uint16_t* p = static_cast<const uint16_t*>(s.data);
      const int64_t rows = s.bf16p_rows;
      for (int64_t c = 0; c < len; ++c) out[c] = bf16_to_f32(p[bf16p_index(row, c0 + c, rows, s.ld)]);
      break;
    }
    default: std::memset(out, 0, static_cast<size_t>(len) * 4); break;
  }
  if (s.scale != 1.f) {
    const __m512 f = _mm512_set1_ps(s.scale);
    for (i = 0; i < len; i += 16) {
      const __mmask16 k = tail_mask16(len - i);
      _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, out + i), f));
    }
  }
  if (s.mask_bits) {
    apply_mask_bits(out, len, s.mask_bits, static_cast<uint64_t>(row * s.drop_ld + c0), keep_scale(s.drop));
  } else if (s.drop.active()) {
    apply_dropout(out, len, s.drop, static_cast<uint64_t>(row * s.drop_ld + c0));
  }
}

Src weight_src(const Weight& w, bool k_major) {
  Src s;
  s.dtype = w.dtype;
  s.data = w.data;
  s.scales = w.scales;
  s.block = w.block;
  s.ld = w.cols;
  s.k_major = k_major;
  s.bf16p_rows = w.rows;
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

int64_t gemm_kblock(Precision prec) { return prec == Precision::BF16 ? tune().kc / 2 : tune().kc / 4; }

Precision precision_for(DType act, DType w) {
  const bool narrow = act == DType::BF16 || w == DType::BF16 || w == DType::BF16P || w == DType::I8 || dtype_is_packed4(w);
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

// In-register transpose of a 16 x 16 dword block: r[i][j] -> r[j][i] (vmath.h's float transpose;
// the casts are free).
inline void transpose16(__m512i r[16]) {
  __m512 f[16];
  for (int i = 0; i < 16; ++i) f[i] = _mm512_castsi512_ps(r[i]);
  transpose16_ps(f);
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castps_si512(f[i]);
}

// True when a non-k-major operand's stored rows already are the packed form: bf16 with an even
// reduction length and row stride (pairs), or f32 for the f32 path; no scale, no dropout.
bool rows_are_packed(const Src& s, Precision prec, int64_t K) {
  if (s.k_major || s.scale != 1.f || s.drop.active() || s.mask_bits) return false;
  if (prec == Precision::F32) return s.dtype == DType::F32;
  return s.dtype == DType::BF16 && K % 2 == 0 && s.ld % 2 == 0 && (reinterpret_cast<uintptr_t>(s.data) & 3) == 0;
}

// A bf16p weight read as stored (no scale, no dropout: how matmuls and LoRA use a frozen weight).
bool plain_bf16p(const Src& s) { return s.dtype == DType::BF16P && s.scale == 1.f && !s.drop.active() && !s.mask_bits; }

// A bf16p weight used as X·Wᵀ's B over its whole row: its storage already is the packed panels.
bool is_bf16p_panels(const Src& s, Precision prec, int64_t K) {
  if (s.dtype != DType::BF16P || s.k_major || prec != Precision::BF16) return false;
  if (!plain_bf16p(s) || K != s.ld) throw std::logic_error("gemm: a bf16p weight is read whole, unscaled");
  return true;
}

// bf16 data that packs without decoding (pairs are two raw bf16 values).
bool raw_bf16(const Src& s, Precision prec) {
  return prec == Precision::BF16 && s.dtype == DType::BF16 && s.scale == 1.f && !s.drop.active() && !s.mask_bits;
}

// 16 pair dwords from two bf16 rows at element n (ra low half, rb high half; rb may be null).
inline __m512i pair_raw(const uint16_t* ra, const uint16_t* rb, int64_t n, __mmask16 k) {
  const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, ra + n));
  if (!rb) return lo;
  const __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, rb + n));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// Stored row `row` of a non-k-major operand over reduction [0, K) as kk dwords (pairs or f32),
// odd K padded with a zero.
const uint32_t* packed_row(const Src& s, Precision prec, bool direct, int64_t row, int64_t K, int64_t kk) {
  if (direct) return static_cast<const uint32_t*>(s.data) + row * (prec == Precision::BF16 ? s.ld / 2 : s.ld);
  Scratch& t = t_scratch;
  if (prec == Precision::BF16 && s.dtype == DType::BF16 && s.mask_bits && !s.drop.active() && s.scale == 1.f) {
    // A bf16 row with masked-out elements zeroed and no scale (a dropout whose keep factor the
    // other operand carries): the pairs are the raw values, one masked load per 32.
    const uint16_t* src = static_cast<const uint16_t*>(s.data) + row * s.ld;
    uint32_t* d = t.pairs.get<uint32_t>(static_cast<size_t>(kk + 16));
    const int64_t bit0 = row * s.drop_ld;
    for (int64_t e = 0; e < 2 * kk; e += 32) {
      const int64_t n = std::min<int64_t>(32, K - e);
      const __mmask32 valid = n >= 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1;
      _mm512_storeu_si512(d + e / 2, _mm512_maskz_loadu_epi16(valid & bits32(s.mask_bits, bit0 + e, n), src + e));
    }
    return d;
  }
  float* f = t.f.get<float>(static_cast<size_t>(K + 2));
  decode_row(s, row, 0, K, f);
  f[K] = 0.f;
  if (prec == Precision::F32) return reinterpret_cast<const uint32_t*>(f);
  uint32_t* d = t.pairs.get<uint32_t>(static_cast<size_t>(kk + 1));
  to_pairs(f, kk, d);
  return d;
}

// A k-major A (stored rows = reduction) is packed in blocks of 48 rows, [M/48][kk][48] dwords:
// a micro-tile's 6 rows (48 % MR == 0, so they never straddle two blocks) then read one cache
// line per k-step from a 192-byte stride, not one line per k-step 4*M bytes apart (a new page
// every step at M >= 1024: the dB GEMM of a rank-256 backward, [1024 x 256] over 2048 k, ran at
// 63 % of the base product's rate that way).
constexpr int64_t kKMajorRows = 48;

// Where the kernel finds A for one segment: element (i, k-pair r) of a k-block starting at kp0.
struct APlan {
  const uint32_t* p = nullptr;
  enum { Direct, Blocked, KMajor } mode = Direct;
  int64_t si = 0;  // Direct: p[i*si + r] (KMajor: see kKMajorRows)
  int64_t kk = 0, kcp = 0, M = 0;
  // Blocked: block starting at kp0 holds rows of kkb = min(kcp, kk - kp0) dwords at p + kp0*M.
  const uint32_t* at(int64_t i, int64_t kp0, int64_t kkb, int64_t& row_stride, int64_t& step) const {
    switch (mode) {
      case Blocked: row_stride = kkb; step = 1; return p + kp0 * M + i * kkb;
      case KMajor: row_stride = 1; step = kKMajorRows; return p + (i / kKMajorRows) * kKMajorRows * kk + kp0 * kKMajorRows + i % kKMajorRows;
      default: row_stride = si; step = 1; return p + i * si + kp0;
    }
  }
};

// Packs rows [m0, m1) of a non-k-major A into the blocked layout.
void pack_a_rows(const Src& a, Precision prec, bool direct, int64_t K, const APlan& pl, uint32_t* dst, int64_t m0, int64_t m1) {
  for (int64_t m = m0; m < m1; ++m) {
    const uint32_t* src = packed_row(a, prec, direct, m, K, pl.kk);
    for (int64_t kp0 = 0; kp0 < pl.kk; kp0 += pl.kcp) {
      const int64_t kkb = std::min(pl.kcp, pl.kk - kp0);
      std::memcpy(dst + kp0 * pl.M + m * kkb, src + kp0, static_cast<size_t>(kkb) * 4);
    }
  }
}

// Packs k-pairs [r0, r1) of a k-major A into the row-blocked layout of kKMajorRows (sr = M rounded
// up to it; rows past M are zero).
void pack_a_kmajor(const Src& a, Precision prec, int64_t K, int64_t M, int64_t kk, int64_t sr, uint32_t* dst, int64_t r0, int64_t r1) {
  constexpr int64_t IB = kKMajorRows;
  auto out_at = [&](int64_t r, int64_t i) { return dst + (i / IB) * IB * kk + r * IB + i % IB; };
  Scratch& t = t_scratch;
  const bool bf = prec == Precision::BF16;
  if (raw_bf16(a, prec)) {
    const uint16_t* base = static_cast<const uint16_t*>(a.data);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t ka = 2 * r;
      const uint16_t* ra = base + ka * a.ld;
      const uint16_t* rb = ka + 1 < K ? ra + a.ld : nullptr;
      for (int64_t i = 0; i < sr; i += 16) _mm512_storeu_si512(out_at(r, i), pair_raw(ra, rb, i, tail_mask16(M - i)));
    }
    return;
  }
  float* fa = t.f.get<float>(static_cast<size_t>(sr + 16));
  float* fb = t.g.get<float>(static_cast<size_t>(sr + 16));
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t ka = bf ? 2 * r : r;
    decode_row(a, ka, 0, M, fa);
    if (bf) {
      if (ka + 1 < K) decode_row(a, ka + 1, 0, M, fb);
      else std::memset(fb, 0, static_cast<size_t>(M) * 4);
    }
    for (int64_t i = 0; i < sr; i += 16) {
      const __mmask16 k = tail_mask16(M - i);
      const __m512 va = _mm512_maskz_loadu_ps(k, fa + i);
      uint32_t* out = out_at(r, i);
      if (bf) _mm512_storeu_si512(out, pair_rows(va, _mm512_maskz_loadu_ps(k, fb + i)));
      else _mm512_storeu_ps(reinterpret_cast<float*>(out), va);
    }
  }
}

// B panels: panel q (columns [64q, 64q + width_q)) at dst + q*64*kk, layout [kk][width_q].
inline int64_t panel_width(int64_t N, int64_t q) { return std::min<int64_t>(NR, (N - q * NR + 15) / 16 * 16); }

// Packs the 16 columns [16g, 16g + 16) of a non-k-major B (stored rows = columns) over all kk.
void pack_b_rows16(const Src& b, Precision prec, bool direct, int64_t K, int64_t N, int64_t kk, uint32_t* dst, int64_t g) {
  constexpr int64_t KCH = 256;  // dwords per row chunk
  const int64_t n0 = 16 * g, q = n0 / NR, c0 = n0 % NR, wq = panel_width(N, q);
  uint32_t* out = dst + q * NR * kk + c0;
  Scratch& t = t_scratch;
  const bool need_copy = !direct;
  uint32_t* rows = need_copy ? t.g.get<uint32_t>(static_cast<size_t>(16 * (kk + 16))) : nullptr;
  // Short f32 rows into bf16 pairs (a LoRA B [N, r] of a small rank): what packed_row + to_pairs
  // + the transpose make of them, gathered straight into the panel (no per-row decode copy).
  const bool short_f32 = need_copy && prec == Precision::BF16 && b.dtype == DType::F32 && !b.k_major && b.scale == 1.f && !b.drop.active() &&
                         !b.mask_bits && K % 2 == 0 && kk <= 16;
  const uint32_t* src[16];
  for (int i = 0; i < 16; ++i) {
    const int64_t n = n0 + i;
    if (n >= N) {
      src[i] = nullptr;
    } else if (direct) {
      src[i] = packed_row(b, prec, true, n, K, kk);
    } else if (short_f32) {
      src[i] = nullptr;  // written below, column by column
    } else {
      std::memcpy(rows + i * (kk + 16), packed_row(b, prec, false, n, K, kk), static_cast<size_t>(kk) * 4);
      src[i] = rows + i * (kk + 16);
    }
  }
  if (short_f32) {
    // Pair j of the 16 columns: two gathers down B's rows, rounded as to_pairs rounds a row this
    // short (its scalar rule; its vector instruction for a full 16 pairs), no transpose.
    const __mmask16 valid = tail_mask16(N - n0);
    const float* base = static_cast<const float*>(b.data) + n0 * b.ld;
    const __m512i rows16 = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(static_cast<int>(b.ld)));
    for (int64_t j = 0; j < kk; ++j) {
      const __m512i at = _mm512_add_epi32(rows16, _mm512_set1_epi32(static_cast<int>(2 * j)));
      const __m512 lo = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, at, base, 4);
      const __m512 hi = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, _mm512_add_epi32(at, _mm512_set1_epi32(1)), base, 4);
      const __m512i v = kk == 16 ? pair_rows(lo, hi) : _mm512_or_si512(bf16_bits_like_scalar(lo), _mm512_slli_epi32(bf16_bits_like_scalar(hi), 16));
      _mm512_storeu_si512(out + j * wq, v);
    }
    return;
  }
  __m512i r[16];
  for (int64_t k0 = 0; k0 < kk; k0 += KCH) {
    const int64_t kend = std::min(kk, k0 + KCH);
    for (int64_t r0 = k0; r0 < kend; r0 += 16) {
      const int64_t cnt = std::min<int64_t>(16, kend - r0);
      const __mmask16 km = tail_mask16(cnt);
      for (int i = 0; i < 16; ++i) r[i] = src[i] ? _mm512_maskz_loadu_epi32(km, src[i] + r0) : _mm512_setzero_si512();
      transpose16(r);
      for (int64_t j = 0; j < cnt; ++j) _mm512_storeu_si512(out + (r0 + j) * wq, r[j]);
    }
  }
}

// In-register transpose of an 8 x 8 block of qwords: z[j] qword i -> z[i] qword j.
inline void transpose8_epi64(__m512i z[8]) {
  __m512i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_epi64(z[2 * i], z[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi64(z[2 * i], z[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // rows 0-3 (h = 0) and 4-7
    u[4 * h + 0] = _mm512_shuffle_i64x2(t[4 * h], t[4 * h + 2], 0x88);
    u[4 * h + 1] = _mm512_shuffle_i64x2(t[4 * h], t[4 * h + 2], 0xDD);
    u[4 * h + 2] = _mm512_shuffle_i64x2(t[4 * h + 1], t[4 * h + 3], 0x88);
    u[4 * h + 3] = _mm512_shuffle_i64x2(t[4 * h + 1], t[4 * h + 3], 0xDD);
  }
  // u[0]: qwords 0 and 4 of z0-z3; u[1]: 2 and 6; u[2]: 1 and 5; u[3]: 3 and 7 (u[4..7]: z4-z7).
  z[0] = _mm512_shuffle_i64x2(u[0], u[4], 0x88);
  z[4] = _mm512_shuffle_i64x2(u[0], u[4], 0xDD);
  z[2] = _mm512_shuffle_i64x2(u[1], u[5], 0x88);
  z[6] = _mm512_shuffle_i64x2(u[1], u[5], 0xDD);
  z[1] = _mm512_shuffle_i64x2(u[2], u[6], 0x88);
  z[5] = _mm512_shuffle_i64x2(u[2], u[6], 0xDD);
  z[3] = _mm512_shuffle_i64x2(u[3], u[7], 0x88);
  z[7] = _mm512_shuffle_i64x2(u[3], u[7], 0xDD);
}

// Packs k-pairs [r0, r1) (multiples of 8) of a bf16p weight used k-major (dY·W: reduction over its
// rows) into all panels, straight from its X·Wᵀ panels: rows 2r .. 2r + 15 are 16 adjacent columns
// of one source panel, and 8 of its pair rows (16 output columns) are an 8 x 8 block of qwords
// (W[n][2t], W[n][2t+1], W[n+1][2t], W[n+1][2t+1]); transposed, then each qword's middle words
// swapped, a qword is the output pairs (W[n][2t], W[n+1][2t]), (W[n][2t+1], W[n+1][2t+1]).
void pack_b_kmajor_bf16p(const Src& b, int64_t N, int64_t kk, uint32_t* dst, int64_t r0, int64_t r1) {
  const uint32_t* w = static_cast<const uint32_t*>(b.data);
  const int64_t rows = b.bf16p_rows, wkk = b.ld / 2;
  alignas(64) static const uint16_t kSwap[32] = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15,
                                                 16, 18, 17, 19, 20, 22, 21, 23, 24, 26, 25, 27, 28, 30, 29, 31};
  const __m512i swap = _mm512_load_si512(kSwap);
  for (int64_t r = r0; r < r1; r += 8) {
    const int64_t n0 = 2 * r, q = n0 / 64, width = std::min<int64_t>(64, rows - 64 * q);
    const uint32_t* src = w + q * 64 * wkk + n0 % 64;
    for (int64_t t0 = 0; t0 < wkk; t0 += 8) {
      const int64_t nt = std::min<int64_t>(8, wkk - t0);
      __m512i z[8];
      for (int j = 0; j < 8; ++j) z[j] = j < nt ? _mm512_loadu_si512(src + (t0 + j) * width) : _mm512_setzero_si512();
      transpose8_epi64(z);
      const int64_t c = 2 * t0, qo = c / NR, wqo = panel_width(N, qo);
      uint32_t* out = dst + qo * NR * kk + c % NR;
      const __mmask16 k = tail_mask16(2 * nt);
      for (int i = 0; i < 8; ++i) _mm512_mask_storeu_epi32(out + (r + i) * wqo, k, _mm512_permutexvar_epi16(swap, z[i]));
    }
  }
}

// Packs k-pairs [r0, r1) of a k-major B (stored rows = reduction) into all panels.
void pack_b_kmajor(const Src& b, Precision prec, int64_t K, int64_t N, int64_t kk, uint32_t* dst, int64_t r0, int64_t r1) {
  Scratch& t = t_scratch;
  const bool bf = prec == Precision::BF16;
  // (K % 16 == 0 makes kk a multiple of 8, and the jobs start on multiples of 16 pairs: every
  // range is whole 8-pair blocks.)
  if (bf && plain_bf16p(b) && K % 16 == 0) {
    pack_b_kmajor_bf16p(b, N, kk, dst, r0, r1);
    return;
  }
  if (raw_bf16(b, prec)) {
    const uint16_t* base = static_cast<const uint16_t*>(b.data);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t ka = 2 * r;
      const uint16_t* ra = base + ka * b.ld;
      const uint16_t* rb = ka + 1 < K ? ra + b.ld : nullptr;
      for (int64_t q = 0; q * NR < N; ++q) {
        const int64_t wq = panel_width(N, q);
        uint32_t* out = dst + q * NR * kk + r * wq;
        for (int64_t c = 0; c < wq; c += 16) _mm512_storeu_si512(out + c, pair_raw(ra, rb, q * NR + c, tail_mask16(N - q * NR - c)));
      }
    }
    return;
  }
  float* fa = t.f.get<float>(static_cast<size_t>(N + 64));
  float* fb = t.g.get<float>(static_cast<size_t>(N + 64));
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t ka = bf ? 2 * r : r;
    decode_row(b, ka, 0, N, fa);
    if (bf) {
      if (ka + 1 < K) decode_row(b, ka + 1, 0, N, fb);
      else std::memset(fb, 0, static_cast<size_t>(N) * 4);
    }
    for (int64_t q = 0; q * NR < N; ++q) {
      const int64_t wq = panel_width(N, q);
      uint32_t* out = dst + q * NR * kk + r * wq;
      for (int64_t c = 0; c < wq; c += 16) {
        const int64_t n = q * NR + c;
        const __mmask16 k = tail_mask16(N - n);
        const __m512 va = _mm512_maskz_loadu_ps(k, fa + n);
        if (bf) _mm512_storeu_si512(out + c, pair_rows(va, _mm512_maskz_loadu_ps(k, fb + n)));
        else _mm512_storeu_ps(reinterpret_cast<float*>(out + c), va);
      }
    }
  }
}

// A second operand pair a kernel call may finish with before storing C (a short low-rank
// segment fused onto the last k-block of the base product: one pass over the C tile, not two).
struct Tail {
  int64_t kk = 0;
  const uint32_t* a = nullptr;
  int64_t sa = 0, sr = 1;
  const uint32_t* b = nullptr;
};

using Kernel = void (*)(int64_t kk, const uint32_t* a, int64_t sa, int64_t sr, const uint32_t* b, const Tail& tail, float* c, int64_t ldc,
                        int cols, bool overwrite, const float* bias);

// C[R, cols] (+)= A · B over kk k-steps, then + A2 · B2 over tail.kk more: A element (i, r) at
// a[i*sa + r*sr], B row r at b + r*NP*16 (the same for the tail's operands).
template <int R, int NP, bool BF>
inline void kernel_loop(int64_t kk, const uint32_t* a, int64_t sa, int64_t sr, const uint32_t* b, __m512 (&acc)[R][NP]) {
  constexpr int W = NP * 16;
  const uint32_t* ap[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) ap[i] = a + i * sa;
  int64_t o = 0;
  for (int64_t r = 0; r < kk; ++r, o += sr) {
    __m512i bv[NP];
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) bv[j] = _mm512_loadu_si512(b + r * W + j * 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      if constexpr (BF) {
        const __m512i av = _mm512_set1_epi32(static_cast<int>(ap[i][o]));
#pragma GCC unroll 4
        for (int j = 0; j < NP; ++j)
          acc[i][j] = _mm512_dpbf16_ps(acc[i][j], reinterpret_cast<const __m512bh&>(av), reinterpret_cast<const __m512bh&>(bv[j]));
      } else {
        float af;
        std::memcpy(&af, ap[i] + o, 4);
        const __m512 av = _mm512_set1_ps(af);
#pragma GCC unroll 4
        for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_fmadd_ps(av, _mm512_castsi512_ps(bv[j]), acc[i][j]);
      }
    }
  }
}

template <int R, int NP, bool BF>
void kernel(int64_t kk, const uint32_t* a, int64_t sa, int64_t sr, const uint32_t* b, const Tail& tail, float* c, int64_t ldc, int cols,
            bool overwrite, const float* bias) {
  __m512 acc[R][NP];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_ps();
  kernel_loop<R, NP, BF>(kk, a, sa, sr, b, acc);
  if (tail.kk) kernel_loop<R, NP, BF>(tail.kk, tail.a, tail.sa, tail.sr, tail.b, acc);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) {
      const int left = cols - 16 * j;
      if (left <= 0) break;
      const __mmask16 k = tail_mask16(left);
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

// The same micro-kernel with a tail per row (row parts, gemm.h): after the shared k-steps, row i
// continues its own accumulators over tails[i] (kk = 0: none) - per element the very sequence
// kernel() runs for a one-part tile, so a register tile may span several parts and the base
// operand is streamed once per MR rows, not once per part.
using RowTailKernel = void (*)(int64_t kk, const uint32_t* a, int64_t sa, int64_t sr, const uint32_t* b, const Tail* tails, float* c, int64_t ldc,
                               int cols, bool overwrite, const float* bias);

template <int R, int NP, bool BF>
void kernel_row_tails(int64_t kk, const uint32_t* a, int64_t sa, int64_t sr, const uint32_t* b, const Tail* tails, float* c, int64_t ldc, int cols,
                      bool overwrite, const float* bias) {
  __m512 acc[R][NP];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_setzero_ps();
  kernel_loop<R, NP, BF>(kk, a, sa, sr, b, acc);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    if (!tails[i].kk) continue;
    __m512 row[1][NP];
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) row[0][j] = acc[i][j];
    kernel_loop<1, NP, BF>(tails[i].kk, tails[i].a, tails[i].sa, tails[i].sr, tails[i].b, row);
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) acc[i][j] = row[0][j];
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) {
      const int left = cols - 16 * j;
      if (left <= 0) break;
      const __mmask16 k = tail_mask16(left);
      float* cp = c + i * ldc + 16 * j;
      __m512 v = acc[i][j];
      if (!overwrite) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, cp));
      if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + 16 * j));
      _mm512_mask_storeu_ps(cp, k, v);
    }
}

template <bool BF>
struct RowTailTable {
  RowTailKernel k[MR][4];
  RowTailTable() {
    fill<1>();
    fill<2>();
    fill<3>();
    fill<4>();
    fill<5>();
    fill<6>();
  }
  template <int R> void fill() {
    k[R - 1][0] = &kernel_row_tails<R, 1, BF>;
    k[R - 1][1] = &kernel_row_tails<R, 2, BF>;
    k[R - 1][2] = &kernel_row_tails<R, 3, BF>;
    k[R - 1][3] = &kernel_row_tails<R, 4, BF>;
  }
};
const RowTailTable<true> kBf16RowTails;
const RowTailTable<false> kF32RowTails;

struct SegPlan {
  int64_t K = 0, kk = 0;
  bool grouped = false;
  int64_t kk_a = 0;  // grouped: dwords of a packed A row (all groups)
  APlan a;
  bool a_direct = false, b_direct = false;
  bool b_panels = false;  // B is a bf16p weight: its storage is the packed panels
  uint32_t* a_dst = nullptr;  // packed A (nullptr when direct)
  uint32_t* b_dst = nullptr;  // packed B panels
};

// One packing job: segment, what, and a range of its units.
struct PackJob {
  int seg;
  enum { ARows, AKMajor, BRows, BKMajor } kind;
  int64_t lo, hi;
};

thread_local Buf t_tile;

// The epilogue (gemm.h) of rows [m0, m1), columns [n0, n1) from the task's tile (ld ldt).
void run_epilogue(const Epilogue& e, int64_t N, bool accumulate, float* tile, int64_t ldt, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const bool bf = e.out.dtype == DType::BF16;
  for (int64_t m = m0; m < m1; ++m) {
    float* tr = tile + (m - m0) * ldt - n0;
    if (e.drop.active()) apply_dropout(tr + n0, n1 - n0, e.drop, static_cast<uint64_t>(m * N + n0));
    uint64_t word = 0;
    for (int64_t n = n0; n < n1; n += 16) {
      const __mmask16 k = tail_mask16(n1 - n);
      __m512 v = _mm512_maskz_loadu_ps(k, tr + n);
      if (e.mask) v = _mm512_maskz_mov_ps(bits16(e.mask, m * N + n, n1 - n), v);
      if (e.residual) v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, e.residual + m * e.ld_residual + n), v);
      const int64_t o = m * e.out.ld + n;
      uint16_t* out16 = static_cast<uint16_t*>(e.out.data) + o;
      float* out32 = static_cast<float*>(e.out.data) + o;
      if (accumulate) v = _mm512_add_ps(v, bf ? bf16_to_ps(_mm256_maskz_loadu_epi16(k, out16)) : _mm512_maskz_loadu_ps(k, out32));
      __m256i h = bf ? bf16_exact(v) : _mm256_setzero_si256();
      if (e.relu_bits) {
        // relu on the stored value (a bf16 output's rounded value, widened back exactly).
        const __mmask16 keep = _mm512_mask_cmp_ps_mask(k, bf ? bf16_to_ps(h) : v, _mm512_setzero_ps(), _CMP_NLE_UQ);
        if (bf) h = _mm256_maskz_mov_epi16(keep, h);
        else v = _mm512_maskz_mov_ps(keep, v);
        word |= static_cast<uint64_t>(keep) << ((n - n0) % 64);
      }
      if (bf) _mm256_mask_storeu_epi16(out16, k, h);
      else _mm512_mask_storeu_ps(out32, k, v);
      if (e.relu_bits && ((n - n0) % 64 == 48 || n + 16 >= n1)) {
        e.relu_bits[(m * N + (n - (n - n0) % 64)) / 64] = word;
        word = 0;
      }
    }
  }
}

// Evens out the threads' shares of the (row block x column block) tasks: among row blocks from
// mc/2 to mc (multiples of MR), the one whose tasks, dealt largest first to the least loaded
// thread, finish soonest (ties: the larger block). A ragged last row block otherwise leaves a
// thread idle at the end of a narrow product (M = 1024 in 144-row blocks and one column block:
// 4 x 144 rows on one thread, 3 x 144 + 16 on the other, 89 % of the ideal).
int64_t balanced_mc(int64_t M, int64_t N, int64_t mc, int64_t nc, int threads) {
  int64_t best = mc, best_span = INT64_MAX;
  std::vector<int64_t> sizes, load(static_cast<size_t>(threads));
  for (int64_t c = mc; c >= std::max<int64_t>(4 * MR, mc / 2); c -= MR) {
    sizes.clear();
    for (int64_t m = 0; m < M; m += c)
      for (int64_t n = 0; n < N; n += nc) sizes.push_back(std::min(c, M - m) * std::min(nc, N - n));
    std::sort(sizes.begin(), sizes.end(), std::greater<int64_t>());
    std::fill(load.begin(), load.end(), 0);
    for (const int64_t sz : sizes) *std::min_element(load.begin(), load.end()) += sz;
    const int64_t span = *std::max_element(load.begin(), load.end());
    if (span < best_span) best_span = span, best = c;
  }
  return best;
}
}  // namespace

void gemm(const Ctx& ctx, int64_t M, int64_t N, const std::vector<Segment>& segs, float* C, int64_t ldc,
          bool accumulate, const float* bias, Precision prec, const GemmHook* hook, const Epilogue* epi) {
  if (M <= 0 || N <= 0) return;
  if (epi && epi->relu_bits && (N % 64 != 0 || accumulate)) throw std::logic_error("gemm: relu bits need N % 64 == 0 and no accumulate");
  int64_t Ktot = 0;
  for (const Segment& s : segs) Ktot += s.K;
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  auto for_tasks = [&](int64_t n, const std::function<void(int64_t, int)>& fn) {
    if (ctx.pool) ctx.pool->parallel_for(n, fn);
    else for (int64_t t = 0; t < n; ++t) fn(t, 0);
  };
  if (Ktot == 0 && epi) {
    // An empty reduction: the product is the bias (or 0), through the epilogue row by row.
    const int64_t w = (N + 15) / 16 * 16;
    for_tasks(M, [&](int64_t m, int) {
      float* row = t_tile.get<float>(static_cast<size_t>(w));
      for (int64_t n = 0; n < N; ++n) row[n] = bias ? bias[n] : 0.f;
      run_epilogue(*epi, N, accumulate, row, w, m, m + 1, 0, N);
    });
    return;
  }
  if (Ktot == 0) {
    if (!accumulate || bias) {
      for_tasks(M, [&](int64_t m, int) {
        for (int64_t n = 0; n < N; ++n) C[m * ldc + n] = (accumulate ? C[m * ldc + n] : 0.f) + (bias ? bias[n] : 0.f);
      });
    }
    return;
  }
  const Tune& tn = tune();
  const bool bf = prec == Precision::BF16;
  const int64_t kcp = bf ? tn.kc / 2 : tn.kc / 4;  // k-steps (pairs or f32 k) per block: the same bytes
  const int64_t panels = (N + NR - 1) / NR;
  const int64_t mpad_k = (M + kKMajorRows - 1) / kKMajorRows * kKMajorRows;  // k-major A rows

  // ---- plan and pack every operand once ----
  PackBufs local;
  PackBufs* pb = t_pack.busy ? &local : &t_pack;
  pb->busy = true;
  struct Release {
    PackBufs* p;
    ~Release() { p->busy = false; }
  } release{pb};

  // Row parts (gemm.h) are planned and packed as segments of their own rows, after segs: `all`
  // lists them, rows_of their row counts.
  const std::vector<RowPart>* parts = segs.size() >= 2 ? segs.back().parts : nullptr;
  std::vector<Segment> ext;
  std::vector<int64_t> rows_of(segs.size(), M);
  if (parts) {
    ext = segs;
    for (const RowPart& rp : *parts) {
      if (rp.a.k_major || rp.m0 < 0 || rp.m1 > M || rp.m0 >= rp.m1) throw std::logic_error("gemm: bad row part");
      Segment sg{rp.a, rp.b, rp.K};
      sg.group_cols = rp.group_cols;
      ext.push_back(sg);
      rows_of.push_back(rp.m1 - rp.m0);
    }
  }
  const std::vector<Segment>& all = parts ? ext : segs;
  std::vector<SegPlan> plan(all.size());
  size_t a_words = 0, b_words = 0;
  for (size_t s = 0; s < all.size(); ++s) {
    const Segment& sg = all[s];
    const int64_t M = rows_of[s];
    SegPlan& p = plan[s];
    p.K = sg.K;
    p.kk = bf ? (sg.K + 1) / 2 : sg.K;
    if (p.kk == 0) continue;
    if (sg.group_cols > 0) {
      // A is packed whole (G*K wide, one k-block); panel q reads the pairs of its group.
      p.grouped = true;
      p.kk_a = p.kk * ((N + sg.group_cols - 1) / sg.group_cols);
      p.a.mode = APlan::Blocked;
      p.a.kk = p.kk_a;
      p.a.kcp = p.kk_a;
      p.a.M = M;
      a_words += static_cast<size_t>(p.kk_a * M);
      p.b_direct = rows_are_packed(sg.b, prec, sg.K);
      b_words += static_cast<size_t>(panels * NR * p.kk);
      continue;
    }
    p.a.kk = p.kk;
    p.a.kcp = kcp;
    p.a.M = M;
    if (sg.a.k_major) {
      p.a.mode = APlan::KMajor;
      a_words += static_cast<size_t>(p.kk * mpad_k);
    } else {
      const bool made_by_hook = hook && s >= hook->after;
      p.a_direct = rows_are_packed(sg.a, prec, sg.K) && (tn.direct != 0 || made_by_hook);
      if (made_by_hook && !p.a_direct) throw std::logic_error("gemm: a segment after the hook needs an A usable in place");
      if (p.a_direct) {
        p.a.mode = APlan::Direct;
        p.a.p = static_cast<const uint32_t*>(sg.a.data);
        p.a.si = bf ? sg.a.ld / 2 : sg.a.ld;
      } else {
        p.a.mode = APlan::Blocked;
        a_words += static_cast<size_t>(p.kk * M);
      }
    }
    p.b_direct = rows_are_packed(sg.b, prec, sg.K);
    p.b_panels = is_bf16p_panels(sg.b, prec, sg.K);
    if (!p.b_panels) b_words += static_cast<size_t>(panels * NR * p.kk);
    if (s >= segs.size() && p.kk > kcp) throw std::logic_error("gemm: a row part longer than one k-block");
  }
  uint32_t* abuf = a_words ? pb->a.get<uint32_t>(a_words + 16) : nullptr;
  uint32_t* bbuf = pb->b.get<uint32_t>(b_words + 16);
  std::vector<PackJob> jobs;
  {
    size_t ao = 0, bo = 0;
    for (size_t s = 0; s < all.size(); ++s) {
      const int64_t M = rows_of[s];
      SegPlan& p = plan[s];
      if (p.kk == 0) continue;
      const int si = static_cast<int>(s);
      if (p.a.mode != APlan::Direct) {
        p.a_dst = abuf + ao;
        p.a.p = p.a_dst;
        if (p.a.mode == APlan::KMajor) {
          ao += static_cast<size_t>(p.kk * mpad_k);
          for (int64_t r = 0; r < p.kk; r += 32) jobs.push_back({si, PackJob::AKMajor, r, std::min(p.kk, r + 32)});
        } else {
          ao += static_cast<size_t>(p.a.kk * M);
          for (int64_t m = 0; m < M; m += 32) jobs.push_back({si, PackJob::ARows, m, std::min(M, m + 32)});
        }
      }
      if (p.b_panels) {
        p.b_dst = const_cast<uint32_t*>(static_cast<const uint32_t*>(all[s].b.data));
        continue;
      }
      p.b_dst = bbuf + bo;
      bo += static_cast<size_t>(panels * NR * p.kk);
      if (all[s].b.k_major) {
        for (int64_t r = 0; r < p.kk; r += 16) jobs.push_back({si, PackJob::BKMajor, r, std::min(p.kk, r + 16)});
      } else {
        // Groups of 16 columns per job: one for long rows, more for short ones (a rank-8 B has
        // thousands of 4-pair rows; a job each cost more in the pool than the packing).
        const int64_t groups = (N + 15) / 16, step = std::max<int64_t>(1, 64 / std::max<int64_t>(p.kk, 1));
        for (int64_t g = 0; g < groups; g += step) jobs.push_back({si, PackJob::BRows, g, std::min(groups, g + step)});
      }
    }
  }
  for_tasks(static_cast<int64_t>(jobs.size()), [&](int64_t j, int) {
    const PackJob& jb = jobs[static_cast<size_t>(j)];
    const Segment& sg = all[static_cast<size_t>(jb.seg)];
    const SegPlan& p = plan[static_cast<size_t>(jb.seg)];
    switch (jb.kind) {
      case PackJob::ARows: pack_a_rows(sg.a, prec, !p.grouped && rows_are_packed(sg.a, prec, sg.K), p.grouped ? (bf ? 2 * p.kk_a : p.kk_a) : sg.K, p.a, p.a_dst, jb.lo, jb.hi); break;
      case PackJob::AKMajor: pack_a_kmajor(sg.a, prec, sg.K, rows_of[static_cast<size_t>(jb.seg)], p.kk, mpad_k, p.a_dst, jb.lo, jb.hi); break;
      case PackJob::BRows:
        for (int64_t g = jb.lo; g < jb.hi; ++g) pack_b_rows16(sg.b, prec, p.b_direct, sg.K, N, p.kk, p.b_dst, g);
        break;
      case PackJob::BKMajor: pack_b_kmajor(sg.b, prec, sg.K, N, p.kk, p.b_dst, jb.lo, jb.hi); break;
    }
  });

  // ---- tiles of C ----
  int64_t mc = std::min<int64_t>(tn.mc, (M + MR - 1) / MR * MR), nc = std::min<int64_t>(tn.nc, (N + NR - 1) / NR * NR);
  const int64_t want = 4 * static_cast<int64_t>(threads);
  if (hook) {
    nc = (N + NR - 1) / NR * NR;
    if (threads > 1 && (M + mc - 1) / mc < want) mc = std::max<int64_t>(4 * MR, ((M + want - 1) / want + MR - 1) / MR * MR);
    // A task spans every column, so its A rows are read once per 64-wide panel: keep them (over
    // one k-block) within ~192 KiB of L2 beside the panel. Measured on the q/k/v LoRA backward
    // (dY [1024, 3072] bf16, rank 8, fused fwd+bwd vs the base matmuls): uncapped (132 rows,
    // 792 KiB) 1.22-1.25x the base backward, 384 KiB 1.14-1.18x, 192 KiB 1.12x, 96 KiB 1.12-1.16x.
    const int64_t row_bytes = std::min(Ktot, bf ? 2 * kcp : kcp) * (bf ? 2 : 4);
    mc = std::min(mc, std::max<int64_t>(4 * MR, (192 * 1024 / row_bytes) / MR * MR));
  } else if (threads > 1) {
    int64_t nb = (N + nc - 1) / nc;
    if (((M + mc - 1) / mc) * nb < want) {
      const int64_t need_m = (want + nb - 1) / nb;
      mc = std::max<int64_t>(4 * MR, ((M + need_m - 1) / need_m + MR - 1) / MR * MR);
      mc = std::min<int64_t>(mc, (M + MR - 1) / MR * MR);
    }
    const int64_t mb = (M + mc - 1) / mc;
    if (mb * nb < want) {
      const int64_t need_n = (want + mb - 1) / mb;
      nc = std::max<int64_t>(NR, ((N + need_n - 1) / need_n + NR - 1) / NR * NR);
      nb = (N + nc - 1) / nc;
    }
    mc = balanced_mc(M, N, mc, nc, threads);
  }
  const int64_t mblocks = (M + mc - 1) / mc, nblocks = (N + nc - 1) / nc;
  const auto& table = bf ? kBf16Kernels.k : kF32Kernels.k;
  const auto& row_tail_table = bf ? kBf16RowTails.k : kF32RowTails.k;

  auto tile = [&](int64_t task, int thread) {
    const int64_t tm = task % mblocks, tnb = task / mblocks;
    const int64_t m0 = tm * mc, m1 = std::min(M, m0 + mc);
    const int64_t n0 = tnb * nc, n1 = std::min(N, n0 + nc);
    bool first = true;
    // Where this task's products land: C, or (epilogue) the thread's tile buffer, overwritten first.
    float* Ct = C;
    int64_t ldct = ldc, mo = 0, no = 0;
    if (epi) {
      ldct = nc;
      Ct = t_tile.get<float>(static_cast<size_t>(mc * nc));
      mo = m0;
      no = n0;
    }
    const bool acc_c = accumulate && !epi;
    // A of segment s for rows from i, k-block kp0 (kkb steps), columns of panel pn.
    auto a_of = [&](size_t s, int64_t i, int64_t pn, int64_t kp0, int64_t kkb, int64_t& sa, int64_t& sr) -> const uint32_t* {
      const SegPlan& p = plan[s];
      if (p.grouped) {
        sa = p.kk_a;
        sr = 1;
        return p.a.p + i * p.kk_a + (pn / all[s].group_cols) * p.kk + kp0;
      }
      return p.a.at(i, kp0, kkb, sa, sr);
    };
    size_t fused = segs.size();  // a segment already done as the tail of the one before
    // The row part holding row i (or -1), and the end of the run of rows that share it.
    auto part_at = [&](int64_t i, int64_t& end) -> int {
      end = M;
      for (size_t k = 0; k < parts->size(); ++k) {
        const RowPart& rp = (*parts)[k];
        if (i < rp.m0) return end = rp.m0, -1;
        if (i < rp.m1) return end = rp.m1, static_cast<int>(k);
      }
      return -1;
    };
    for (size_t s = 0; s <= segs.size(); ++s) {
      if (hook && s == hook->after) hook->fn(m0, m1, thread);
      if (s == segs.size()) break;
      if (s == fused) continue;
      const SegPlan& p = plan[s];
      if (p.kk == 0) continue;
      const Segment& sg = segs[s];
      // The next segment rides on this one's last k-block when it is short and unmasked.
      const bool can_fuse = s + 1 < segs.size() && !(hook && s + 1 == hook->after) && !sg.c_mask && !segs[s + 1].c_mask &&
                            plan[s + 1].kk > 0 && plan[s + 1].kk <= kcp;
      // The next segment is the row parts: each row block of a part gets that part as its tail.
      const bool part_tails = parts && s + 2 == segs.size();
      if (part_tails && (sg.c_mask || hook)) throw std::logic_error("gemm: row parts after a masked segment or with a hook");
      for (int64_t kp0 = 0; kp0 < p.kk; kp0 += kcp) {
        const int64_t kkb = std::min(kcp, p.kk - kp0);
        const bool overwrite = first && !acc_c;
        const float* bias_now = first ? bias : nullptr;
        const bool with_tail = can_fuse && kp0 + kkb == p.kk;
        const bool with_parts = part_tails && kp0 + kkb == p.kk;
        if (with_tail) fused = s + 1;
        for (int64_t pn = n0; pn < n1; pn += NR) {
          const int64_t q = pn / NR, wq = panel_width(N, q);
          const int np = static_cast<int>(wq / 16);
          const int cols = static_cast<int>(std::min<int64_t>(wq, N - pn));
          const uint32_t* bq = p.b_dst + q * NR * p.kk + kp0 * wq;
          for (int64_t i = m0, rows = 0; i < m1; i += rows) {
            rows = std::min<int64_t>(MR, m1 - i);
            int64_t sa = 0, sr = 1;
            const uint32_t* ai = a_of(s, i, pn, kp0, kkb, sa, sr);
            Tail tail;
            if (with_tail) {
              const SegPlan& p2 = plan[s + 1];
              tail.kk = p2.kk;
              tail.a = a_of(s + 1, i, pn, 0, p2.kk, tail.sa, tail.sr);
              tail.b = p2.b_dst + q * NR * p2.kk;
            }
            float* ci = Ct + (i - mo) * ldct + (pn - no);
            const float* bi = bias_now ? bias_now + pn : nullptr;
            if (with_parts) {
              // Each row of the tile finishes with its own part's tail (none outside the parts).
              Tail tails[MR];
              for (int64_t t = 0; t < rows; ++t) {
                int64_t end = M;
                const int k = part_at(i + t, end);
                if (k < 0) continue;
                const size_t ps = segs.size() + static_cast<size_t>(k);
                const SegPlan& p2 = plan[ps];
                tails[t].kk = p2.kk;
                tails[t].a = a_of(ps, i + t - (*parts)[static_cast<size_t>(k)].m0, pn, 0, p2.kk, tails[t].sa, tails[t].sr);
                tails[t].b = p2.b_dst + q * NR * p2.kk;
              }
              row_tail_table[rows - 1][np - 1](kkb, ai, sa, sr, bq, tails, ci, ldct, cols, overwrite, bi);
              continue;
            }
            if (!sg.c_mask) {
              table[rows - 1][np - 1](kkb, ai, sa, sr, bq, tail, ci, ldct, cols, overwrite, bi);
              continue;
            }
            alignas(64) float tile[MR * NR];
            table[rows - 1][np - 1](kkb, ai, sa, sr, bq, tail, tile, NR, cols, true, nullptr);
            for (int t = 0; t < rows; ++t) {
              float* tr = tile + t * NR;
              apply_mask_bits(tr, cols, sg.c_mask, static_cast<uint64_t>((i + t) * sg.c_mask_ld + pn), sg.c_mask_keep);
              float* cr = ci + t * ldct;
              for (int c = 0; c < cols; c += 16) {
                const __mmask16 k = tail_mask16(cols - c);
                __m512 v = _mm512_load_ps(tr + c);
                if (!overwrite) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, cr + c));
                if (bi) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bi + c));
                _mm512_mask_storeu_ps(cr + c, k, v);
              }
            }
          }
        }
        first = false;
      }
    }
    if (epi) run_epilogue(*epi, N, accumulate, Ct, ldct, m0, m1, n0, n1);
  };
  // With a hook, each row block's hook gets its slot (not the pool thread that happens to run
  // it), so the hook's per-slot partial sums reduce deterministically.
  if (hook) for_blocks_by_slot(ctx, mblocks * nblocks, tile);
  else for_tasks(mblocks * nblocks, tile);
}

}  // namespace lora::ops::cpu

namespace lora::ops::cpu {

void pack_bf16p(const Ctx& ctx, const float* src, int64_t N, int64_t K, void* dst) {
  Src s;
  s.dtype = DType::F32;
  s.data = src;
  s.ld = K;
  parallel_range(ctx, N / 16, 1, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) pack_b_rows16(s, Precision::BF16, false, K, N, K / 2, static_cast<uint32_t*>(dst), g);
  });
}

Weight weight_rows(const Weight& w, int64_t row0, int64_t rows) {
  Weight r = w;
  r.rows = rows;
  const int64_t e = row0 * w.cols;
  switch (w.dtype) {
    case DType::F32: r.data = static_cast<const float*>(w.data) + e; break;
    case DType::BF16P:
      // Whole panels only: the slice's panel widths must be the ones it was packed with. Its
      // panels then start where the bf16 rows would.
      if (row0 % 64 || (rows % 64 && row0 + rows != w.rows)) throw std::invalid_argument("a bf16p weight can only be split at multiples of 64 rows");
      [[fallthrough]];
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
