// Planted bugs in copies of the op kernels' patterns, which the emulator must catch, next to the
// real kernels as controls. Built by g++ against cuda/emu (see emu-planted.test.ts):
//   planted_bugs barrier     attn_fwd's key-tile staging without the barrier between the
//                            cooperative smem store and the row reads: wrong (NaN-poisoned smem)
//                            under forward, reversed and shuffled order; the same code with the
//                            barrier is right under all three (exit 0 iff both hold).
//   planted_bugs divergent   a reduction whose warps reach different __syncthreads: the launch
//                            must throw EmuError naming both lines (exit 0 iff it does).
//   planted_bugs oob         relu over a ragged tail without the bounds guard on the store. In an
//                            ASan build this must die with heap-buffer-overflow (the test checks).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../norm.cuh"
#include "../elementwise.cuh"

namespace lk = lora::kemu;

// PLANTED BUG: the key-tile staging of attn_fwd_kernel without the barrier between the
// cooperative store into (poisoned) dynamic shared memory and the per-lane reads of whole rows.
__global__ void key_tile_missing_barrier(const float* q, const float* k, float* s, int D) {
  LORA_DYN_SMEM(float, Ks);
  for (int e = threadIdx.x; e < 32 * D; e += 128) Ks[(e / D) * (D + 1) + e % D] = k[e];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  float dot = 0.f;
  for (int d = 0; d < D; ++d) dot += q[w * D + d] * Ks[lane * (D + 1) + d];
  s[threadIdx.x] = dot;
}
// The same with the barrier (control).
__global__ void key_tile_with_barrier(const float* q, const float* k, float* s, int D) {
  LORA_DYN_SMEM(float, Ks);
  for (int e = threadIdx.x; e < 32 * D; e += 128) Ks[(e / D) * (D + 1) + e % D] = k[e];
  __syncthreads();
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  float dot = 0.f;
  for (int d = 0; d < D; ++d) dot += q[w * D + d] * Ks[lane * (D + 1) + d];
  s[threadIdx.x] = dot;
}

// PLANTED BUG: warp 0 and the other warps wait at different barriers.
__global__ void reduction_divergent_barrier(const float* x, float* out) {
  __shared__ float red[4];
  const int w = threadIdx.x >> 5;
  const float v = lk::warp_sum(x[threadIdx.x]);
  if ((threadIdx.x & 31) == 0) red[w] = v;
  if (w == 0) {
    __syncthreads();  // planted: line A
  } else {
    __syncthreads();  // planted: line B
  }
  if (threadIdx.x == 0) out[0] = red[0] + red[1] + red[2] + red[3];
}

// PLANTED BUG: the store of the ragged tail is not guarded.
__global__ void relu_unguarded(int64_t n, const float* x, float* y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const float v = i < n ? x[i] : 0.f;
  y[i] = v > 0.f ? v : 0.f;
}

static std::vector<float> data(size_t n, unsigned seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = static_cast<float>(seed >> 8) / 16777216.f * 4.f - 1.f;
  }
  return v;
}

static int barrier_case() {
  const int D = 16;
  const auto q = data(4 * D, 3), k = data(32 * D, 4);
  std::vector<double> want(128);
  for (int t = 0; t < 128; ++t) {
    double a = 0;
    for (int d = 0; d < D; ++d) a += double(q[(t >> 5) * D + d]) * k[(t & 31) * D + d];
    want[t] = a;
  }
  int failures = 0;
  for (auto order : {lora::emu::Order::Forward, lora::emu::Order::Reversed, lora::emu::Order::Shuffled}) {
    lora::emu::set_order_override(order, 11);
    const char* name = order == lora::emu::Order::Forward ? "forward" : order == lora::emu::Order::Reversed ? "reversed" : "shuffled";
    std::vector<float> bad(128), good(128);
    const size_t smem = sizeof(float) * 32 * (D + 1);
    LORA_LAUNCH(key_tile_missing_barrier, dim3(1), dim3(128), smem, nullptr, q.data(), k.data(), bad.data(), D);
    LORA_LAUNCH(key_tile_with_barrier, dim3(1), dim3(128), smem, nullptr, q.data(), k.data(), good.data(), D);
    int wrong = 0;
    double err = 0;
    for (int t = 0; t < 128; ++t) {
      wrong += !(std::fabs(bad[t] - want[t]) < 1e-4);
      err = std::fmax(err, std::fabs(good[t] - want[t]));
    }
    const bool pass = wrong > 0 && err < 1e-4;
    std::printf("%s missing barrier, %-8s order: %d of 128 planted results wrong (NaN from poisoned smem or stale), control max err %.2g\n",
                pass ? "PASS" : "FAIL", name, wrong, err);
    failures += !pass;
  }
  lora::emu::clear_order_override();
  return failures;
}

static int divergent_case() {
  const auto x = data(128, 5);
  float out = 0;
  try {
    LORA_LAUNCH(reduction_divergent_barrier, dim3(1), dim3(128), 0, nullptr, x.data(), &out);
  } catch (const lora::emu::EmuError& e) {
    const std::string m = e.what();
    const bool both = m.find("divergent __syncthreads") != std::string::npos && m.find("planted_bugs.cc:50") != std::string::npos &&
                      m.find("planted_bugs.cc:52") != std::string::npos;
    std::printf("%s divergent __syncthreads caught: %s\n", both ? "PASS" : "FAIL", m.c_str());
    return both ? 0 : 1;
  }
  std::printf("FAIL divergent __syncthreads not caught\n");
  return 1;
}

static int oob_case() {
  const int64_t n = 1000;  // 4 blocks of 256: the last 24 threads store past the end
  std::vector<float> x = data(n, 9);
  float* y = new float[n];
  std::printf("launching relu_unguarded over n=%lld with 1024 threads\n", static_cast<long long>(n));
  std::fflush(stdout);
  LORA_LAUNCH(relu_unguarded, dim3(4), dim3(256), 0, nullptr, n, x.data(), y);
  std::printf("relu_unguarded finished without a report (expected under ASan: heap-buffer-overflow)\n");
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += y[i];
  delete[] y;
  return s < 0 ? 2 : 3;  // never 0: reaching here means nothing caught the overflow
}

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "";
  if (what == "barrier") return barrier_case();
  if (what == "divergent") return divergent_case();
  if (what == "oob") return oob_case();
  std::fprintf(stderr, "usage: planted_bugs barrier|divergent|oob\n");
  return 2;
}
