// cpu backend: causal attention as blocked, flash-style AVX-512 kernels; f32 throughout.
//
// Every matrix product is one register-blocked FMA micro-kernel (gemm_tile below: C[M, N] (+)=
// A[M, K]·B[K, N] with A read through arbitrary row/column strides, so Pᵀ and dSᵀ tiles are used
// without transposing them, and B contiguous along N in multiples of 16). The score tiles are kept
// transposed, Sᵀ[keys, queries], so the per-query softmax reductions run down the columns as plain
// vector max/add and the per-query lse / D values load as vectors.
//
// Query row i sits at position q_offset + i over Tk key rows; query head h reads KV head
// h / (H / Hkv) (GQA).
// Forward: one task per (batch, head, 64-query block); keys stream in blocks of 64 up to the causal
// diagonal (and kv_len) with an online softmax (running max and sum per query). Caches lse[B, H, T];
// no [T, Tk] buffer exists. A KV cache is appended to first (attn_append_cache_host).
// Backward: one task per (batch, KV head), looping over the query heads of its group, so dQ, dK and
// dV rows of a task belong to it alone (no atomics): per query head and query block, the P and dP tiles of the key blocks at or below the diagonal are made
// (P recomputed from q, k and lse) and kept while D sums when O was not kept, then dQ accumulates
// their dS·K and dK/dV their dSᵀ·Q / Pᵀ·dO.
// GCC 12 reports false "uninitialized" warnings inside the masked intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu_kernels.h"
#include "par.h"
#include "vmath.h"

namespace lora::ops::cpu {

namespace {
constexpr int64_t kBlk = 64;  // keys per key block and queries per query block
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();
constexpr int64_t kAhead = 8;  // rows prefetched ahead while packing

inline int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

inline bool visible(const int32_t* kv_len, const int32_t* mask, int64_t Tk, int64_t b, int64_t j) {
  return !(kv_len && j >= kv_len[b]) && !(mask && mask[b * Tk + j] == 0);
}

// C[MR, 16·NV] (+)= A[MR, K]·B[K, 16·NV]; A(r, k) = A[r·ars + k·aks], B rows ldb apart.
template <int MR, int NV>
void micro(const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb, int64_t K, float* C, int64_t ldc, bool acc) {
  __m512 c[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = acc ? _mm512_loadu_ps(C + r * ldc + 16 * v) : _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(B + k * ldb + 16 * v);
    const float* a = A + k * aks;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * ars]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(av, b[v], c[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

using MicroFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool);
constexpr int kMR = 6;
#define LORA_ATTN_ROW(MR) {micro<MR, 1>, micro<MR, 2>, micro<MR, 3>, micro<MR, 4>}
const MicroFn kMicro[kMR][4] = {LORA_ATTN_ROW(1), LORA_ATTN_ROW(2), LORA_ATTN_ROW(3), LORA_ATTN_ROW(4), LORA_ATTN_ROW(5), LORA_ATTN_ROW(6)};
#undef LORA_ATTN_ROW

// C[M, N] (+)= A[M, K]·B[K, N], N a multiple of 16. K = 0 with acc = false zeroes C.
void gemm_tile(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb, float* C, int64_t ldc, bool acc) {
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    const int nv = static_cast<int>(std::min<int64_t>(4, (N - n0) / 16));
    for (int64_t m0 = 0; m0 < M; m0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
      kMicro[mr - 1][nv - 1](A + m0 * ars, ars, aks, B + n0, ldb, K, C + m0 * ldc + n0, ldc, acc);
    }
  }
}

// The same product over bf16 pairs: C[MR, 16·NV] = A[MR, Kp pairs]·B[Kp pairs, 16·NV] through
// vdpbf16ps (each product of two bf16 values is exact in f32; only the order of the f32 sums
// differs from the FMA path on the widened values). A(r, kp) = A[r·ars + kp], B pair rows ldb apart.
template <int MR, int NV>
void micro_bf(const uint32_t* A, int64_t ars, const uint32_t* B, int64_t ldb, int64_t Kp, float* C, int64_t ldc) {
  __m512 c[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < Kp; ++k) {
    __m512i b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(B + k * ldb + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i av = _mm512_set1_epi32(static_cast<int>(A[r * ars + k]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_dpbf16_ps(c[r][v], reinterpret_cast<const __m512bh&>(av), reinterpret_cast<const __m512bh&>(b[v]));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

using MicroBfFn = void (*)(const uint32_t*, int64_t, const uint32_t*, int64_t, int64_t, float*, int64_t);
#define LORA_ATTN_ROW(MR) {micro_bf<MR, 1>, micro_bf<MR, 2>, micro_bf<MR, 3>, micro_bf<MR, 4>}
const MicroBfFn kMicroBf[kMR][4] = {LORA_ATTN_ROW(1), LORA_ATTN_ROW(2), LORA_ATTN_ROW(3), LORA_ATTN_ROW(4), LORA_ATTN_ROW(5), LORA_ATTN_ROW(6)};
#undef LORA_ATTN_ROW

// C[M, N] = A[M, Kp pairs]·B[Kp pairs, N] (bf16 pairs), N a multiple of 16.
void gemm_tile_bf(int64_t M, int64_t N, int64_t Kp, const uint32_t* A, int64_t ars, const uint32_t* B, int64_t ldb, float* C, int64_t ldc) {
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    const int nv = static_cast<int>(std::min<int64_t>(4, (N - n0) / 16));
    for (int64_t m0 = 0; m0 < M; m0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
      kMicroBf[mr - 1][nv - 1](A + m0 * ars, ars, B + n0, ldb, Kp, C + m0 * ldc + n0, ldc);
    }
  }
}

// bf16 q/k rows usable as pairs in place: even D and row strides, 4-byte aligned heads.
inline bool pairs_ok(const void* q, int64_t ldq, const void* k, int64_t ldk, int64_t D) {
  return D % 2 == 0 && ldq % 2 == 0 && ldk % 2 == 0 && (reinterpret_cast<uintptr_t>(q) & 3) == 0 && (reinterpret_cast<uintptr_t>(k) & 3) == 0;
}

// 16 (masked) lanes of a q/k/v row, f32 or bf16 (widened exactly).
inline __m512 load_qkv(__mmask16 k, const void* base, DType dt, int64_t i) {
  if (dt == DType::BF16)
    return bf16_to_ps(_mm256_maskz_loadu_epi16(k, static_cast<const uint16_t*>(base) + i));
  return _mm512_maskz_loadu_ps(k, static_cast<const float*>(base) + i);
}

// rows [n, D] of a bf16 q/k/v head (row r at base + r·ld) widened into dst rows ldd apart, zero
// padded from D to ldd.
inline void widen_rows(const uint16_t* base, int64_t ld, int64_t n, int64_t D, float* dst, int64_t ldd) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t d = 0; d < ldd; d += 16) _mm512_storeu_ps(dst + r * ldd + d, load_qkv(tail_mask16(D - d), base + r * ld, DType::BF16, d));
}

inline __m512i lane_index(int64_t base) {
  return _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(base)), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}
}  // namespace

namespace {
// A forward call's task layout. bf16 q/k/v: one task per (batch, head) widens that head's q/k/v
// rows once into [T, Dp] f32 packs (zero padded) and runs all its query blocks on them; f32: one
// task per (batch, head, query block), rows read in place.
struct FwdPlan {
  int64_t nqb, per;
  bool bf, bfp;  // bfp: bf16 q/k as pairs, S = K·Qᵀ through vdpbf16ps straight from the stored rows
  int64_t tasks;
};
FwdPlan fwd_plan(const AttnFwd& p) {
  FwdPlan f{};
  f.nqb = (p.T + kBlk - 1) / kBlk;
  f.bf = p.qkv_dtype == DType::BF16;
  f.bfp = f.bf && pairs_ok(p.q, p.ldq, p.k, p.ldk, p.D);
  f.per = f.bf ? std::max<int64_t>(f.nqb, 1) : 1;
  f.tasks = p.B * p.H * f.nqb / f.per;
  return f;
}

// One thread's buffers, grown to the largest call it has run (the ragged call's requests differ
// in T and Tk); every element a task reads it has written first.
struct FwdScratch {
  std::vector<float> qt, st, vp, oacc, vw, qw, kw;
};
inline void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// Task `outer` of the call (p: caches already appended): its `per` (batch, head, query block) units.
void fwd_task(const AttnFwd& p, const FwdPlan& plan, int64_t outer, FwdScratch& sc) {
  const int64_t T = p.T, Tk = p.Tk, off = p.q_offset, group = p.H / p.Hkv, D = p.D, Dp = round16(D);
  const int64_t nqb = plan.nqb, per = plan.per;
  const bool bf = plan.bf, bfp = plan.bfp;
  grow(sc.qt, D * kBlk), grow(sc.st, kBlk * kBlk), grow(sc.vp, kBlk * Dp), grow(sc.oacc, kBlk * Dp);
  if (bf) grow(sc.vw, Tk * Dp);
  if (bf && !bfp) grow(sc.qw, T * Dp), grow(sc.kw, Tk * Dp);
  std::vector<float>& qt = sc.qt, &st = sc.st, &vp = sc.vp, &oacc = sc.oacc, &vw = sc.vw, &qw = sc.qw, &kw = sc.kw;
  alignas(64) float mrun[kBlk], lrun[kBlk], alpha[kBlk];
  for (int64_t task = outer * per; task < (outer + 1) * per; ++task) {
    const int64_t bh = task / nqb, qb = task % nqb, b = bh / p.H, h = bh % p.H, g = h / group;
    const int64_t i0 = qb * kBlk, bq = std::min(kBlk, T - i0), bqp = round16(bq);
    // This head's q, k, v rows: (src, ld) in place, or the widened packs.
    const float *qs, *ks, *vs;
    int64_t ldq, ldk, ldv;
    if (bf) {
      if (qb == 0) {
        if (!bfp) {
          widen_rows(static_cast<const uint16_t*>(p.q) + b * T * p.ldq + h * D, p.ldq, T, D, qw.data(), Dp);
          widen_rows(static_cast<const uint16_t*>(p.k) + b * Tk * p.ldk + g * D, p.ldk, Tk, D, kw.data(), Dp);
        }
        widen_rows(static_cast<const uint16_t*>(p.v) + b * Tk * p.ldv + g * D, p.ldv, Tk, D, vw.data(), Dp);
      }
      qs = qw.data(), ks = kw.data(), vs = vw.data();
      ldq = ldk = ldv = Dp;
    } else {
      qs = static_cast<const float*>(p.q) + b * T * p.ldq + h * D;
      ks = static_cast<const float*>(p.k) + b * Tk * p.ldk + g * D;
      vs = static_cast<const float*>(p.v) + b * Tk * p.ldv + g * D;
      ldq = p.ldq, ldk = p.ldk, ldv = p.ldv;
    }
    // Qᵀ block [D, 64] (padding columns zero); with bf16 pairs, [D/2, 64] pair rows: the dword
    // transpose of the block's q rows (moved bit for bit).
    const uint32_t* kpairs = nullptr;
    if (bfp) {
      const uint16_t* qh = static_cast<const uint16_t*>(p.q) + (b * T + i0) * p.ldq + h * D;
      transpose_to(reinterpret_cast<const float*>(qh), p.ldq / 2, bq, D / 2, qt.data(), kBlk);
      kpairs = reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(p.k) + b * Tk * p.ldk + g * D);
    } else {
      transpose_to(qs + i0 * ldq, ldq, bq, D, qt.data(), kBlk);
    }
    std::fill(oacc.begin(), oacc.end(), 0.f);
    for (int64_t i = 0; i < kBlk; ++i) mrun[i] = kNegInf, lrun[i] = 0.f;
    __mmask16 nan[4] = {0, 0, 0, 0};
    const int64_t kend = std::min<int64_t>(off + i0 + bq, p.kv_len ? std::min<int64_t>(Tk, p.kv_len[b]) : Tk);
    const __m512 vscale = _mm512_set1_ps(p.scale), vninf = _mm512_set1_ps(kNegInf);
    for (int64_t j0 = 0; j0 < kend; j0 += kBlk) {
      const int64_t jn = std::min(kBlk, kend - j0);
      // Sᵀ[jn, bqp] = K·Qᵀ, K rows read in place.
      if (bfp) gemm_tile_bf(jn, bqp, D / 2, kpairs + j0 * (p.ldk / 2), p.ldk / 2, reinterpret_cast<const uint32_t*>(qt.data()), kBlk, st.data(), kBlk);
      else gemm_tile(jn, bqp, D, ks + j0 * ldk, ldk, 1, qt.data(), kBlk, st.data(), kBlk, false);
      // Scale, mask, column (per-query) max, NaN flags.
      __m512 bmax[4];
      for (int c = 0; c < 4; ++c) bmax[c] = vninf;
      // Only blocks reaching past the diagonal need the causal compare.
      const bool diag = j0 + jn - 1 > off + i0;
      for (int64_t j = 0; j < jn; ++j) {
        const int64_t jg = j0 + j;
        float* srow = st.data() + j * kBlk;
        const bool vis = visible(p.kv_len, p.mask, Tk, b, jg);
        for (int64_t c = 0; c < bqp / 16; ++c) {
          __m512 s = _mm512_mul_ps(_mm512_loadu_ps(srow + 16 * c), vscale);
          const __mmask16 ok = !vis ? 0
                               : diag ? _mm512_cmp_epi32_mask(lane_index(off + i0 + 16 * c), _mm512_set1_epi32(static_cast<int32_t>(jg)), _MM_CMPINT_NLT)
                                      : static_cast<__mmask16>(0xFFFF);
          s = _mm512_mask_mov_ps(vninf, ok, s);
          nan[c] |= _mm512_cmp_ps_mask(s, s, _CMP_UNORD_Q);
          bmax[c] = _mm512_max_ps(bmax[c], s);
          _mm512_storeu_ps(srow + 16 * c, s);
        }
      }
      // Online softmax update: m' = max(m, block max); alpha = e^(m - m'); P = e^(S - m').
      __m512 muse[4], lsum[4];
      for (int64_t c = 0; c < bqp / 16; ++c) {
        const __m512 mold = _mm512_loadu_ps(mrun + 16 * c);
        const __m512 mnew = _mm512_max_ps(mold, bmax[c]);
        const __mmask16 fin = _mm512_cmp_ps_mask(mnew, vninf, _CMP_NEQ_OQ);
        muse[c] = _mm512_maskz_mov_ps(fin, mnew);
        _mm512_storeu_ps(alpha + 16 * c, exp_ps(_mm512_sub_ps(mold, muse[c])));
        _mm512_storeu_ps(mrun + 16 * c, mnew);
        lsum[c] = _mm512_setzero_ps();
      }
      for (int64_t j = 0; j < jn; ++j) {
        float* srow = st.data() + j * kBlk;
        for (int64_t c = 0; c < bqp / 16; ++c) {
          const __m512 e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(srow + 16 * c), muse[c]));
          lsum[c] = _mm512_add_ps(lsum[c], e);
          _mm512_storeu_ps(srow + 16 * c, e);
        }
      }
      for (int64_t c = 0; c < bqp / 16; ++c) {
        const __m512 l = _mm512_loadu_ps(lrun + 16 * c);
        _mm512_storeu_ps(lrun + 16 * c, _mm512_fmadd_ps(l, _mm512_loadu_ps(alpha + 16 * c), lsum[c]));
      }
      // V block (rows used in place when their width is a multiple of 16 - always for the
      // widened bf16 packs - else packed [jn, Dp] with zero padding), O rows rescaled, O += P·V.
      const float* vb = vs + j0 * ldv;
      int64_t ldvb = ldv;
      if (!bf && D != Dp) {
        for (int64_t j = 0; j < jn; ++j) {
          float* dst = vp.data() + j * Dp;
          std::copy(vb + j * ldv, vb + j * ldv + D, dst);
          std::fill(dst + D, dst + Dp, 0.f);
        }
        vb = vp.data();
        ldvb = Dp;
      }
      for (int64_t i = 0; i < bq; ++i) {
        if (alpha[i] == 1.f) continue;
        const __m512 a = _mm512_set1_ps(alpha[i]);
        float* o = oacc.data() + i * Dp;
        for (int64_t d = 0; d < Dp; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), a));
      }
      gemm_tile(bq, Dp, jn, st.data(), 1, kBlk, vb, ldvb, oacc.data(), Dp, true);
    }
    for (int64_t i = 0; i < bq; ++i) {
      float* o = p.o + (b * T + i0 + i) * p.ldo + h * D;
      float* lse = p.lse + (b * p.H + h) * T + i0 + i;
      const bool isnan = (nan[i / 16] >> (i % 16)) & 1;
      if (isnan) {
        for (int64_t d = 0; d < D; ++d) o[d] = std::numeric_limits<float>::quiet_NaN();
        *lse = std::numeric_limits<float>::quiet_NaN();
      } else if (mrun[i] == kNegInf || lrun[i] == 0.f) {
        for (int64_t d = 0; d < D; ++d) o[d] = 0.f;
        *lse = kNegInf;
      } else {
        const float inv = 1.f / lrun[i];
        const float* a = oacc.data() + i * Dp;
        for (int64_t d = 0; d < D; ++d) o[d] = a[d] * inv;
        *lse = mrun[i] + std::log(lrun[i]);
      }
    }
  }
}
}  // namespace

void attn_fwd(const Ctx& ctx, const AttnFwd& call) {
  const AttnFwd p = attn_append_cache_host(call);
  const FwdPlan plan = fwd_plan(p);
  parallel_range(ctx, plan.tasks, 1, [&](int64_t t0, int64_t t1) {
    FwdScratch sc;
    for (int64_t t = t0; t < t1; ++t) fwd_task(p, plan, t, sc);
  });
}

// The ragged call: every request's caches appended, then the tasks of all requests (request ×
// head × query block) on the pool at once - the same tasks, so each request's rows are bit for bit
// its own attn_fwd call's, with one pool dispatch per layer instead of one per request (16 decode
// rows of 12 heads: 192 tasks at once instead of 16 dispatches of 12).
void attn_ragged(const Ctx& ctx, const AttnRagged& call) {
  const size_t n = static_cast<size_t>(call.nrows);
  std::vector<AttnFwd> rows(n);
  std::vector<FwdPlan> plans(n);
  std::vector<int64_t> first(n + 1, 0);  // the first task of each request
  for (size_t r = 0; r < n; ++r) {
    rows[r] = attn_append_cache_host(attn_ragged_row(call, static_cast<int64_t>(r)));
    plans[r] = fwd_plan(rows[r]);
    first[r + 1] = first[r] + plans[r].tasks;
  }
  parallel_range(ctx, first[n], 1, [&](int64_t t0, int64_t t1) {
    FwdScratch sc;
    size_t r = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), t0) - first.begin() - 1);
    for (int64_t t = t0; t < t1; ++t) {
      while (t >= first[r + 1]) ++r;
      fwd_task(rows[r], plans[r], t - first[r], sc);
    }
  });
}

// Gradient contract: dq, dk, dv overwrite. Per tile: P = exp(S - lse), Dᵢ = dOᵢ·Oᵢ,
// dV += Pᵀ·dO, dS = P∘(dO·Vᵀ - D), dQ += scale·dS·K, dK += scale·dSᵀ·Q (a KV head's dK/dV sum over
// the query heads of its group, in head order).
void attn_bwd(const Ctx& ctx, const AttnBwd& p) {
  const int64_t T = p.T, Tk = p.Tk, off = p.q_offset, group = p.H / p.Hkv, D = p.D, Dp = round16(D), Tp = round16(T), Tkp = round16(Tk);
  // bf16 q/k/v: K and V blocks are read from the widened row packs kr, vr instead of in place.
  const bool bf = p.qkv_dtype == DType::BF16;
  const bool bfp = bf && pairs_ok(p.q, p.ldq, p.k, p.ldk, D);  // S through vdpbf16ps, as the forward
  const DType qd = p.qkv_dtype;
  parallel_range(ctx, p.B * p.Hkv, 1, [&](int64_t t0, int64_t t1) {
    const size_t td = static_cast<size_t>(T * Dp), tkd = static_cast<size_t>(Tk * Dp);
    std::vector<float> qt(static_cast<size_t>(D * Tp)), dot(static_cast<size_t>(D * Tp)), qr(td), dor(td), kr(tkd), dqa(td), vr(bf ? tkd : 0);
    std::vector<float> lse(static_cast<size_t>(Tp)), dvec(static_cast<size_t>(Tp));
    std::vector<float> ptiles, dtiles, dkall, dvall;  // a query block's P / dP tiles, the dK / dV sums
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / p.Hkv, g = task % p.Hkv;
      // The KV head's K rows (and V rows for bf16) widened into [Tk, Dp] packs, zero padded.
      for (int64_t j = 0; j < Tk; ++j) {
        const int64_t r = b * Tk + j, ki = r * p.ldk + g * D, vi = r * p.ldv + g * D;
        if (j + kAhead < Tk) {
          const int64_t es = bf ? 2 : 4;
          const char* kb = static_cast<const char*>(p.k) + ((r + kAhead) * p.ldk + g * D) * es;
          for (int64_t d = 0; d < D; d += 16) {
            _mm_prefetch(kb + d * es, _MM_HINT_T0);
            if (bf) _mm_prefetch(static_cast<const char*>(p.v) + ((r + kAhead) * p.ldv + g * D + d) * es, _MM_HINT_T0);
          }
        }
        for (int64_t d = 0; d < Dp; d += 16) {
          const __mmask16 kd = tail_mask16(D - d);
          _mm512_storeu_ps(kr.data() + j * Dp + d, load_qkv(kd, p.k, qd, ki + d));
          if (bf) _mm512_storeu_ps(vr.data() + j * Dp + d, load_qkv(kd, p.v, qd, vi + d));
        }
      }
      const int64_t kend = p.kv_len ? std::min<int64_t>(Tk, p.kv_len[b]) : Tk;
      const int64_t nkb = (kend + kBlk - 1) / kBlk;
      ptiles.assign(static_cast<size_t>(std::max<int64_t>(nkb, 1) * kBlk * kBlk), 0.f);
      dtiles.assign(ptiles.size(), 0.f);
      dkall.assign(static_cast<size_t>(Tkp * Dp), 0.f);
      dvall.assign(dkall.size(), 0.f);
      const uint32_t* kpairs = bfp ? reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(p.k) + b * Tk * p.ldk + g * D) : nullptr;
      const __m512 vscale = _mm512_set1_ps(p.scale);
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        // Packs: Qᵀ, dOᵀ [D, Tp]; Q, dO rows [T, Dp]; lse (+inf for rows without keys, so their
        // P is 0) and D = rowsum(dO∘O), padding 0.
        if (!bf) transpose_to(static_cast<const float*>(p.q) + b * T * p.ldq + h * D, p.ldq, T, D, qt.data(), Tp);
        transpose_to(p.dout + b * T * p.lddo + h * D, p.lddo, T, D, dot.data(), Tp);
        for (int64_t i = 0; i < T; ++i) {
          const int64_t r = b * T + i;
          const int64_t qi = r * p.ldq + h * D;
          const float* gr = p.dout + r * p.lddo + h * D;
          const float* o = p.o ? p.o + r * p.ldo + h * D : nullptr;
          float* qrow = qr.data() + i * Dp;
          float* drow = dor.data() + i * Dp;
          // The rows sit a whole qkv row apart (new pages): fetch a few rows ahead.
          if (i + kAhead < T) {
            const int64_t ra = r + kAhead;
            const int64_t es = bf ? 2 : 4;
            const char* qb = static_cast<const char*>(p.q) + (ra * p.ldq + h * D) * es;
            for (int64_t d = 0; d < D; d += 16) {
              _mm_prefetch(qb + d * es, _MM_HINT_T0);
              _mm_prefetch(reinterpret_cast<const char*>(p.dout + ra * p.lddo + h * D + d), _MM_HINT_T0);
              if (p.o) _mm_prefetch(reinterpret_cast<const char*>(p.o + ra * p.ldo + h * D + d), _MM_HINT_T0);
            }
          }
          __m512 dacc = _mm512_setzero_ps();
          for (int64_t d = 0; d < Dp; d += 16) {
            const __mmask16 kd = tail_mask16(D - d);
            const __m512 gv = _mm512_maskz_loadu_ps(kd, gr + d);
            _mm512_storeu_ps(qrow + d, load_qkv(kd, p.q, qd, qi + d));
            _mm512_storeu_ps(drow + d, gv);
            if (o) dacc = _mm512_fmadd_ps(gv, _mm512_maskz_loadu_ps(kd, o + d), dacc);
          }
          const float l = p.lse[(b * p.H + h) * T + i];
          lse[i] = l == kNegInf ? kPosInf : l;
          dvec[i] = _mm512_reduce_add_ps(dacc);
        }
        for (int64_t i = T; i < Tp; ++i) lse[i] = kPosInf, dvec[i] = 0.f;
        if (bfp) {
          // Qᵀ as pair rows [D/2, Tp] (the dword transpose of the q rows), K pairs in place.
          transpose_to(reinterpret_cast<const float*>(static_cast<const uint16_t*>(p.q) + b * T * p.ldq + h * D), p.ldq / 2, T, D / 2, qt.data(), Tp);
        } else if (bf) {
          transpose_to(qr.data(), Dp, T, D, qt.data(), Tp);
        }
        // Sᵀ = K·Qᵀ for key block j0 (jn keys) and query block i0 (bqp columns) into out (rows kBlk apart).
        auto scores = [&](int64_t j0, int64_t jn, int64_t i0, int64_t bqp, float* out) {
          if (bfp) gemm_tile_bf(jn, bqp, D / 2, kpairs + j0 * (p.ldk / 2), p.ldk / 2, reinterpret_cast<const uint32_t*>(qt.data()) + i0, Tp, out, kBlk);
          else gemm_tile(jn, bqp, D, bf ? kr.data() + j0 * Dp : static_cast<const float*>(p.k) + (b * Tk + j0) * p.ldk + g * D, bf ? Dp : p.ldk, 1, qt.data() + i0, Tp, out, kBlk, false);
        };
        std::fill(dqa.begin(), dqa.end(), 0.f);
        // The causal/padding visibility of 16 queries from i0 + 16c (positions off + i0 + 16c) to key jg.
        auto seen = [&](int64_t jg, int64_t i0, int64_t c, bool vis) -> __mmask16 {
          return vis ? _mm512_cmp_epi32_mask(lane_index(off + i0 + 16 * c), _mm512_set1_epi32(static_cast<int32_t>(jg)), _MM_CMPINT_NLT) : 0;
        };
        // P (masked, kept as 0 where a key is hidden) of key block j0 for query block i0 in place of S.
        auto probs = [&](int64_t j0, int64_t jn, int64_t i0, int64_t bqp, float* tile) {
          for (int64_t j = 0; j < jn; ++j) {
            const int64_t jg = j0 + j;
            float* prow = tile + j * kBlk;
            const bool vis = visible(p.kv_len, p.mask, Tk, b, jg);
            for (int64_t c = 0; c < bqp / 16; ++c) {
              const __m512 e = exp_ps(_mm512_fmsub_ps(_mm512_loadu_ps(prow + 16 * c), vscale, _mm512_loadu_ps(lse.data() + i0 + 16 * c)));
              _mm512_storeu_ps(prow + 16 * c, _mm512_maskz_mov_ps(seen(jg, i0, c, vis), e));
            }
          }
        };
        auto vblock = [&](int64_t j0) { return bf ? vr.data() + j0 * Dp : static_cast<const float*>(p.v) + (b * Tk + j0) * p.ldv + g * D; };
        const int64_t ldvb = bf ? Dp : p.ldv;
        // Query blocks outermost. Pass 1 keeps each key block's P and dP tiles for this query block
        // (L2-sized: Tk/64 pairs of 64x64) and, without a kept O, sums D_i = Σ_j P_ij dP_ij from them;
        // pass 2 turns them into dS and the three products. dK and dV accumulate over the query
        // blocks (and the group's heads) in [Tk, Dp] buffers, in the same order as a key-block-outer
        // loop would. Nothing is computed twice.
        for (int64_t i0 = 0; i0 < T; i0 += kBlk) {
          const int64_t bq = std::min(kBlk, T - i0), bqp = round16(bq);
          const int64_t jend = std::min(kend, off + i0 + bq);
          for (int64_t j0 = 0; j0 < jend; j0 += kBlk) {
            const int64_t jn = std::min(kBlk, kend - j0);
            float* pj = ptiles.data() + (j0 / kBlk) * kBlk * kBlk;
            float* dj = dtiles.data() + (j0 / kBlk) * kBlk * kBlk;
            scores(j0, jn, i0, bqp, pj);                                                           // Sᵀ = K·Qᵀ
            gemm_tile(jn, bqp, D, vblock(j0), ldvb, 1, dot.data() + i0, Tp, dj, kBlk, false);  // dPᵀ = V·dOᵀ
            probs(j0, jn, i0, bqp, pj);
            if (p.o) continue;
            for (int64_t c = 0; c < bqp; c += 16) {
              __m512 acc = _mm512_loadu_ps(dvec.data() + i0 + c);
              for (int64_t j = 0; j < jn; ++j) acc = _mm512_fmadd_ps(_mm512_loadu_ps(pj + j * kBlk + c), _mm512_loadu_ps(dj + j * kBlk + c), acc);
              _mm512_storeu_ps(dvec.data() + i0 + c, acc);
            }
          }
          for (int64_t j0 = 0; j0 < jend; j0 += kBlk) {
            const int64_t jn = std::min(kBlk, kend - j0);
            float* pj = ptiles.data() + (j0 / kBlk) * kBlk * kBlk;
            float* dj = dtiles.data() + (j0 / kBlk) * kBlk * kBlk;
            for (int64_t j = 0; j < jn; ++j) {
              const int64_t jg = j0 + j;
              const bool vis = visible(p.kv_len, p.mask, Tk, b, jg);
              for (int64_t c = 0; c < bqp / 16; ++c) {
                const __m512 pv = _mm512_loadu_ps(pj + j * kBlk + 16 * c);
                const __m512 ds = _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_loadu_ps(dj + j * kBlk + 16 * c), _mm512_loadu_ps(dvec.data() + i0 + 16 * c)));
                _mm512_storeu_ps(dj + j * kBlk + 16 * c, _mm512_maskz_mov_ps(seen(jg, i0, c, vis), ds));
              }
            }
            gemm_tile(jn, Dp, bq, pj, kBlk, 1, dor.data() + i0 * Dp, Dp, dvall.data() + j0 * Dp, Dp, true);  // dV += Pᵀ·dO
            gemm_tile(jn, Dp, bq, dj, kBlk, 1, qr.data() + i0 * Dp, Dp, dkall.data() + j0 * Dp, Dp, true);  // dK += dSᵀ·Q
            gemm_tile(bq, Dp, jn, dj, 1, kBlk, kr.data() + j0 * Dp, Dp, dqa.data() + i0 * Dp, Dp, true);    // dQ += dS·K
          }
        }
        for (int64_t i = 0; i < T; ++i) {
          float* dq = p.dq + (b * T + i) * p.lddq + h * D;
          const float* a = dqa.data() + i * Dp;
          for (int64_t d = 0; d < D; ++d) dq[d] = a[d] * p.scale;
        }
      }
      for (int64_t j = 0; j < Tk; ++j) {
        const int64_t r = b * Tk + j;
        float* dk = p.dk + r * p.lddk + g * D;
        float* dv = p.dv + r * p.lddv + g * D;
        for (int64_t d = 0; d < D; ++d) dk[d] = dkall[j * Dp + d] * p.scale, dv[d] = dvall[j * Dp + d];
      }
    }
  });
}

}  // namespace lora::ops::cpu
