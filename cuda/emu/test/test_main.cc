// Self-test of the CUDA emulator: runs the kernels of kernels.cuh on the CPU.
// Prints one line per case and a final "N passed, M failed"; exits non-zero on failure.
//   emu_test                 all cases (order from LORA_EMU_ORDER / LORA_EMU_SEED)
//   emu_test --child-oob     (internal) runs the out-of-bounds kernel; used under ASan
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.cuh"

namespace {

using lora::emu::EmuError;

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void require(bool ok, const std::string& what) {
  if (!ok) throw Failure(what);
}

std::string str(const char* f, double a = 0, double b = 0, double c = 0) {
  char buf[512];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// Runs fn, which must throw EmuError; returns the message.
std::string expect_emu_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const EmuError& e) {
    return e.what();
  }
  throw Failure("expected lora::emu::EmuError, but the launch succeeded");
}

std::string at_line(int line) { return std::string("kernels.cuh:") + std::to_string(line); }

const char* order_name(lora::emu::Order o) {
  switch (o) {
    case lora::emu::Order::Forward: return "forward";
    case lora::emu::Order::Reversed: return "reversed";
    case lora::emu::Order::Shuffled: return "shuffled";
  }
  return "?";
}

// Deterministic small-integer data so that float results are exact in any summation order.
uint32_t lcg(uint32_t& s) {
  s = s * 1664525u + 1013904223u;
  return s >> 8;
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------
void case_vec_add() {
  for (int n : {1, 127, 128, 1000, 4097}) {
    std::vector<float> a(n), b(n), c(n, -1.0f);
    for (int i = 0; i < n; ++i) {
      a[i] = static_cast<float>(i);
      b[i] = static_cast<float>(2 * i + 1);
    }
    emu_test::launch_vec_add(a.data(), b.data(), c.data(), n, nullptr);
    for (int i = 0; i < n; ++i) require(c[i] == 3.0f * i + 1.0f, str("n=%g: c[%g] wrong", n, i));
  }
}

void case_block_reduce() {
  const int n = 100003, blocks = 7;
  std::vector<float> in(n), partial(blocks, 0.0f);
  float total = 0.0f;
  uint32_t s = 7;
  double want_total = 0;
  for (int i = 0; i < n; ++i) {
    in[i] = static_cast<float>(static_cast<int>(lcg(s) % 9) - 4);
    want_total += in[i];
  }
  emu_test::launch_block_sum(in.data(), partial.data(), &total, n, blocks, nullptr);
  for (int blk = 0; blk < blocks; ++blk) {
    double want = 0;
    for (int i = blk * 256; i < n; i += 256 * blocks)
      for (int t = 0; t < 256 && i + t < n; ++t) want += in[i + t];
    require(partial[blk] == static_cast<float>(want), str("block %g: got %g want %g", blk, partial[blk], want));
  }
  require(total == static_cast<float>(want_total), str("total %g want %g", total, want_total));
}

void case_warp_shuffles() {
  const int blocks = 3, threads = 64, n = blocks * threads;
  std::vector<int> in(n), out(n * 10, -7);
  uint32_t s = 11;
  for (int i = 0; i < n; ++i) in[i] = static_cast<int>(lcg(s) % 200);
  emu_test::launch_warp_ops(in.data(), out.data(), blocks, threads, nullptr);
  for (int blk = 0; blk < blocks; ++blk) {
    int cnt = 0;
    for (int t = 0; t < threads; ++t) cnt += (in[blk * threads + t] % 3 == 0);
    for (int t = 0; t < threads; ++t) {
      const int base = blk * threads + (t & ~31), lane = t & 31;
      const int* o = &out[(blk * threads + t) * 10];
      int sum = 0, scan = 0, down = 0, half = 0;
      unsigned bal = 0;
      for (int l = 0; l < 32; ++l) {
        sum += in[base + l];
        if (l <= lane) scan += in[base + l];
        if (in[base + l] & 1) bal |= 1u << l;
      }
      // __shfl_down_sync tree: lane 0 holds the full sum; other lanes hold partial sums.
      {
        int v[32];
        for (int l = 0; l < 32; ++l) v[l] = in[base + l];
        for (int off = 16; off > 0; off >>= 1) {
          int nv[32];
          for (int l = 0; l < 32; ++l) nv[l] = v[l] + (l + off < 32 ? v[l + off] : v[l]);
          std::memcpy(v, nv, sizeof v);
        }
        down = v[lane];
      }
      if (lane < 16)
        for (int l = 0; l < 16; ++l) half += in[base + l];
      const int bc = in[base + (lane & 16) + 3];
      require(o[0] == sum, str("xor-reduce t=%g got %g want %g", t, o[0], sum));
      require(o[1] == down, str("down-reduce t=%g got %g want %g", t, o[1], down));
      require(o[2] == scan, str("up-scan t=%g got %g want %g", t, o[2], scan));
      require(o[3] == bc, str("width-16 broadcast t=%g got %g want %g", t, o[3], bc));
      require(static_cast<unsigned>(o[4]) == bal, str("ballot t=%g", t));
      require(o[5] == 0 && o[6] == 1, str("any/all t=%g", t));
      require(o[7] == half, str("half-warp mask reduce t=%g got %g want %g", t, o[7], half));
      require(o[8] == in[base + (lane ^ 1)], str("float shuffle t=%g", t));
      require(o[9] == cnt, str("__syncthreads_count t=%g got %g want %g", t, o[9], cnt));
    }
  }
}

void case_geometry() {
  const dim3 grid(3, 2, 2), block(8, 4, 2);
  const unsigned nb = 12, nt = 64;
  std::vector<unsigned> out(nb * nt * 7, 0xDEADu);
  emu_test::launch_geometry(out.data(), grid, block, nullptr);
  for (unsigned b = 0; b < nb; ++b)
    for (unsigned t = 0; t < nt; ++t) {
      const unsigned* o = &out[(b * nt + t) * 7];
      const unsigned tx = t % 8, ty = (t / 8) % 4, tz = t / 32;
      require(o[0] == tx && o[1] == ty && o[2] == tz, str("threadIdx of linear thread %g in block %g", t, b));
      require(o[3] == b % 3 && o[4] == (b / 3) % 2 && o[5] == b / 6, str("blockIdx of block %g", b));
      unsigned bal = 0;
      for (unsigned l = 0; l < 32; ++l)
        if ((((t & ~31u) + l) / 8) % 4 & 1u) bal |= 1u << l;
      require(o[6] == bal, str("ballot over y in block %g thread %g", b, t));
    }
}

void case_atomics() {
  const int n = 64 * 256 + 77;
  std::vector<int> in(n);
  uint32_t s = 5;
  std::vector<int> want_bins(16, 0);
  float want_sum = 0;
  int want_max = -1;
  for (int i = 0; i < n; ++i) {
    in[i] = static_cast<int>(lcg(s) % 100000);
    want_bins[in[i] & 15]++;
    want_sum += static_cast<float>(in[i] & 7);
    want_max = std::max(want_max, in[i]);
  }
  std::vector<int> bins(16, 0);
  float fsum = 0;
  int imax = -1;
  unsigned cas = 0;
  emu_test::launch_atomics(in.data(), n, bins.data(), &fsum, &imax, &cas, nullptr);
  for (int b = 0; b < 16; ++b) require(bins[b] == want_bins[b], str("bin %g: %g want %g", b, bins[b], want_bins[b]));
  require(fsum == want_sum, str("atomicAdd(float) %g want %g", fsum, want_sum));
  require(imax == want_max, str("atomicMax %g want %g", imax, want_max));
  require(cas == static_cast<unsigned>(n), str("atomicCAS loop count %g want %g", cas, n));
}

void case_bf16_half() {
  require(__bfloat162float(__float2bfloat16(1.0f)) == 1.0f, "bf16 1.0");
  require(__bfloat162float(__float2bfloat16(1.0f + 0.00390625f)) == 1.0f, "bf16 tie rounds to even (down)");
  require(__bfloat162float(__float2bfloat16(1.0f + 3 * 0.00390625f)) == 1.015625f, "bf16 tie rounds to even (up)");
  require(__bfloat162float(__float2bfloat16(-2.5f)) == -2.5f, "bf16 -2.5");
  require(std::isnan(__bfloat162float(__float2bfloat16(NAN))), "bf16 NaN");
  require(std::isinf(__bfloat162float(__float2bfloat16(INFINITY))), "bf16 inf");
  require(__half2float(__float2half(65504.0f)) == 65504.0f, "half max");
  require(std::isinf(__half2float(__float2half(65520.0f))), "half overflow to inf");
  require(__half2float(__float2half(5.9604644775390625e-08f)) == 5.9604644775390625e-08f, "half min subnormal");
  require(__half2float(__float2half(2.98e-08f)) == 0.0f, "half underflow");
  require(__half2float(__float2half(0.1f)) == 0.0999755859375f, "half 0.1");
  require(__half2float(__float2half(1.0f + 0.00048828125f)) == 1.0f, "half tie to even");
  const __nv_bfloat162 p = __floats2bfloat162_rn(1.5f, -3.0f);
  require(__low2float(p) == 1.5f && __high2float(p) == -3.0f, "bf16x2 pack");
  require(lora::cuda::pack_bf16x2(1.0f, 2.0f) == 0x40003F80u, "pack_bf16x2 low half first");
  require(__expf(0.0f) == 1.0f && __fdividef(1.0f, 4.0f) == 0.25f && rsqrtf(4.0f) == 0.5f, "math intrinsics");
  require(min(3, -2) == -2 && max(2.5f, 1.0f) == 2.5f, "min/max");
}

void case_smem_poison() {
  const int threads = 96;
  std::vector<float> out(threads, 0.0f);
  std::vector<unsigned> raw(threads, 0);
  emu_test::launch_read_unwritten_smem(out.data(), raw.data(), threads, nullptr);
  for (int t = 0; t < threads; ++t) {
    require(std::isnan(out[t]), str("thread %g read %g from unwritten shared memory, want NaN", t, out[t]));
    require(raw[t] == 0xFFFFFFFFu, "poison bytes are 0xFF");
  }
}

void case_mma_fragments() {
  std::vector<__nv_bfloat16> A(16 * 16), B(16 * 8);
  std::vector<float> C(16 * 8), D(16 * 8, -1.0f);
  uint32_t s = 3;
  for (auto& v : A) v = __float2bfloat16(static_cast<float>(static_cast<int>(lcg(s) % 9) - 4));
  for (auto& v : B) v = __float2bfloat16(static_cast<float>(static_cast<int>(lcg(s) % 9) - 4) * 0.5f);
  for (auto& v : C) v = static_cast<float>(static_cast<int>(lcg(s) % 21) - 10);
  emu_test::launch_mma_fragments(A.data(), B.data(), C.data(), D.data(), nullptr);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      float want = C[i * 8 + j];
      for (int k = 0; k < 16; ++k) want += __bfloat162float(A[i * 16 + k]) * __bfloat162float(B[k * 8 + j]);
      require(D[i * 8 + j] == want, str("D[%g][%g] = %g", i, j, D[i * 8 + j]) + str(" want %g", want));
    }
}

void case_ldmatrix_layout() {
  std::vector<uint16_t> src(32 * 16);
  for (int i = 0; i < 32 * 16; ++i) src[i] = static_cast<uint16_t>(i);
  std::vector<uint32_t> out(32 * 14, 0);
  emu_test::launch_ldmatrix_dump(src.data(), out.data(), nullptr);
  auto M = [&](int mat, int r, int c) { return static_cast<uint32_t>(src[(8 * mat + r) * 16 + c]); };
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    auto plain = [&](int mat) { return M(mat, g, 2 * t) | (M(mat, g, 2 * t + 1) << 16); };
    auto trans = [&](int mat) { return M(mat, 2 * t, g) | (M(mat, 2 * t + 1, g) << 16); };
    const uint32_t* o = &out[l * 14];
    const uint32_t want[14] = {plain(0), plain(0), plain(1), plain(0), plain(1), plain(2), plain(3),
                               trans(0), trans(0), trans(1), trans(0), trans(1), trans(2), trans(3)};
    for (int i = 0; i < 14; ++i) require(o[i] == want[i], str("lane %g register %g = %g", l, i, o[i]));
  }
}

void run_gemm(bool b_is_nk, int M, int N, int K) {
  std::vector<__nv_bfloat16> A(static_cast<size_t>(M) * K), B(static_cast<size_t>(N) * K);
  std::vector<float> C(static_cast<size_t>(M) * N, NAN);
  uint32_t s = 17u + static_cast<uint32_t>(M * 31 + N * 7 + K);
  for (auto& v : A) v = __float2bfloat16(static_cast<float>(static_cast<int>(lcg(s) % 7) - 3));
  for (auto& v : B) v = __float2bfloat16(static_cast<float>(static_cast<int>(lcg(s) % 7) - 3));
  emu_test::launch_gemm_bf16(b_is_nk, A.data(), B.data(), C.data(), M, N, K, nullptr);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float want = 0;
      for (int k = 0; k < K; ++k) {
        const float bv = b_is_nk ? __bfloat162float(B[static_cast<size_t>(j) * K + k])
                                 : __bfloat162float(B[static_cast<size_t>(k) * N + j]);
        want += __bfloat162float(A[static_cast<size_t>(i) * K + k]) * bv;
      }
      const float got = C[static_cast<size_t>(i) * N + j];
      require(got == want, std::string(b_is_nk ? "NK" : "KN") + str(" C[%g][%g] = %g", i, j, got) +
                               str(" want %g (M=%g", want, M) + str(" N=%g K=%g)", N, K));
    }
}

void case_gemm_nk() {
  run_gemm(true, 40, 20, 72);  // ragged M, N; 4.5 k-tiles (zero-filled tail)
  run_gemm(true, 16, 8, 16);
}

void case_gemm_kn() {
  run_gemm(false, 40, 24, 72);
  run_gemm(false, 33, 40, 48);
}

void case_cp_async_pipeline() {
  for (int nchunks : {1, 64, 200, 333}) {
    std::vector<float4> src(nchunks), dst(nchunks, float4{-1, -1, -1, -1});
    for (int i = 0; i < nchunks; ++i) src[i] = float4{1.0f * i, 2.0f * i, 3.0f * i, 4.0f * i};
    emu_test::launch_cp_async_copy(false, src.data(), dst.data(), nchunks, nullptr);
    for (int i = 0; i < nchunks; ++i)
      require(dst[i].x == src[i].x && dst[i].w == src[i].w, str("chunk %g of %g", i, nchunks));
  }
}

void case_bug_cp_async_lax_wait() {
  const int nchunks = 200;
  std::vector<float4> src(nchunks), dst(nchunks, float4{-1, -1, -1, -1});
  for (int i = 0; i < nchunks; ++i) src[i] = float4{1.0f * i, 2.0f * i, 3.0f * i, 4.0f * i};
  emu_test::launch_cp_async_copy(true, src.data(), dst.data(), nchunks, nullptr);
  int wrong = 0;
  for (int i = 0; i < nchunks; ++i) wrong += !(dst[i].x == src[i].x);
  require(wrong > 0, "reading a cp.async destination before its group completed went unnoticed");
}

void case_bug_missing_barrier() {
  const int threads = 128;
  std::vector<float> in(threads), out(threads);
  for (int t = 0; t < threads; ++t) in[t] = static_cast<float>(t + 1);
  auto wrong_count = [&](lora::emu::Order order, int with_barrier) {
    lora::emu::set_order_override(order, 1234);
    std::fill(out.begin(), out.end(), -5.0f);
    try {
      emu_test::launch_shift_right(in.data(), out.data(), threads, with_barrier, nullptr);
    } catch (...) {
      lora::emu::clear_order_override();
      throw;
    }
    lora::emu::clear_order_override();
    int wrong = 0;
    for (int t = 0; t < threads; ++t) wrong += !(out[t] == (t > 0 ? in[t - 1] : 0.0f));
    return wrong;
  };
  for (auto o : {lora::emu::Order::Forward, lora::emu::Order::Reversed, lora::emu::Order::Shuffled})
    require(wrong_count(o, 1) == 0, std::string("correct kernel fails under ") + order_name(o));
  require(wrong_count(lora::emu::Order::Forward, 0) == 0, "buggy kernel should pass under forward order");
  require(wrong_count(lora::emu::Order::Reversed, 0) > 0, "missing barrier not exposed by reversed order");
  require(wrong_count(lora::emu::Order::Shuffled, 0) > 0, "missing barrier not exposed by shuffled order");
}

void case_bug_divergent_barrier() {
  std::vector<float> out(32);
  const std::string msg = expect_emu_error([&] { emu_test::launch_divergent_barrier(out.data(), nullptr); });
  require(contains(msg, "divergent __syncthreads"), "message: " + msg);
  require(contains(msg, at_line(emu_test::kDivergentLineA)) && contains(msg, at_line(emu_test::kDivergentLineB)),
          "message must name both barrier lines: " + msg);
}

void case_bug_exit_before_barrier() {
  std::vector<float> out(64);
  const std::string msg = expect_emu_error([&] { emu_test::launch_exit_before_barrier(out.data(), 40, nullptr); });
  require(contains(msg, at_line(emu_test::kExitBarrierLine)) && contains(msg, "exited"), "message: " + msg);
  emu_test::launch_exit_before_barrier(out.data(), 64, nullptr);  // every thread reaches it: fine
  require(out[63] == 2.0f, "exit_before_barrier with n = blockDim");
}

void case_bug_bad_mask() {
  std::vector<int> out(32);
  std::string msg = expect_emu_error([&] { emu_test::launch_bad_mask(out.data(), nullptr); });
  require(contains(msg, "does not include the calling lane") && contains(msg, at_line(emu_test::kBadMaskLine)),
          "message: " + msg);
  msg = expect_emu_error([&] { emu_test::launch_mask_names_missing_lanes(out.data(), nullptr); });
  require(contains(msg, "do not exist"), "message: " + msg);
}

void case_bug_deadlock() {
  std::vector<int> out(32);
  const std::string msg = expect_emu_error([&] { emu_test::launch_deadlock(out.data(), nullptr); });
  require(contains(msg, "deadlock"), "message: " + msg);
  require(contains(msg, at_line(emu_test::kDeadlockShflLine)) && contains(msg, at_line(emu_test::kDeadlockBarLine)),
          "deadlock report must name both wait sites: " + msg);
}

void case_errors_recoverable() {
  std::vector<int> out(32);
  std::string msg = expect_emu_error([&] { emu_test::launch_trapper(out.data(), nullptr); });
  require(contains(msg, "__trap()") && contains(msg, at_line(emu_test::kTrapLine)) && contains(msg, "thread (5,0,0)"),
          "message: " + msg);
  // invalid configurations
  std::vector<float> a(4096), b(4096), c(4096);
  msg = expect_emu_error([&] { LORA_LAUNCH(emu_test::vec_add, dim3(1), dim3(2048), 0, nullptr, a.data(), b.data(), c.data(), 1); });
  require(contains(msg, "1024"), "message: " + msg);
  msg = expect_emu_error([&] { LORA_LAUNCH(emu_test::vec_add, dim3(1), dim3(32), 64 * 1024, nullptr, a.data(), b.data(), c.data(), 1); });
  require(contains(msg, "cudaFuncSetAttribute"), "message: " + msg);
  LORA_CUDA_CHECK(cudaFuncSetAttribute(emu_test::vec_add, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024));
  LORA_LAUNCH(emu_test::vec_add, dim3(1), dim3(32), 64 * 1024, nullptr, a.data(), b.data(), c.data(), 1);
  // and the emulator still works after all of that
  case_vec_add();
}

[[maybe_unused]] void case_oob_write_asan(const char* self) {
#if defined(__SANITIZE_ADDRESS__)
  const std::string cmd = std::string("'") + self + "' --child-oob 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  require(p != nullptr, "popen failed");
  std::string out;
  char buf[4096];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  const int status = pclose(p);
  require(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0, "child exited cleanly: " + out);
  require(contains(out, "heap-buffer-overflow") && contains(out, "WRITE"),
          "AddressSanitizer did not report the out-of-bounds write:\n" + out);
  require(contains(out, "vec_add_oob"), "ASan report does not name the kernel:\n" + out);
#else
  (void)self;
#endif
}

int child_oob() {
  const int n = 1000;  // 8 blocks of 128: the last 24 threads write past the end of c
  std::vector<float> a(n, 1.0f), b(n, 2.0f);
  auto* c = new float[n];
  emu_test::launch_vec_add_oob(a.data(), b.data(), c, n, nullptr);
  delete[] c;
  std::puts("child: no error detected");
  return 0;
}

double bench_barrier(int threads) {
  const int iters = 2000;
  int out = 0;
  emu_test::launch_barrier_loop(10, &out, 1, threads, nullptr);  // warm-up: maps the stacks
  const auto t0 = std::chrono::steady_clock::now();
  emu_test::launch_barrier_loop(iters, &out, 1, threads, nullptr);
  const auto t1 = std::chrono::steady_clock::now();
  require(out == iters * (iters - 1) / 2, "barrier loop result");
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / (static_cast<double>(iters) * threads);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--child-oob") == 0) return child_oob();

  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string order = "?";
  try {
    order = order_name(lora::emu::current_order());
  } catch (const std::exception& e) {
    std::printf("FAIL configuration: %s\n0 passed, 1 failed\n", e.what());
    return 1;
  }
  std::printf("lora emu self-test: order=%s seed=%llu workers=%u switch=%s stack=%zu KiB%s\n", order.c_str(),
              static_cast<unsigned long long>(lora::emu::current_seed()), lora::emu::worker_count(),
              lora::emu::context_switch_kind(), lora::emu::fiber_stack_bytes() / 1024,
#if defined(__SANITIZE_ADDRESS__)
              " asan"
#else
              ""
#endif
  );

  struct Case {
    const char* name;
    std::function<void()> fn;
  };
  const char* self = argv[0];
  const std::vector<Case> cases = {
      {"vector add, ragged tail", case_vec_add},
      {"block reduction (shared memory + barriers, float atomic)", case_block_reduce},
      {"warp shuffles, ballot/any/all, partial masks, __syncthreads_count", case_warp_shuffles},
      {"3-D grid/block geometry", case_geometry},
      {"atomics across blocks on worker threads", case_atomics},
      {"bf16/half conversions and math intrinsics", case_bf16_half},
      {"dynamic shared memory poisoned (NaN)", case_smem_poison},
      {"mma m16n8k16 bf16 fragment layout (PTX ISA)", case_mma_fragments},
      {"ldmatrix x1/x2/x4 (+trans) layout", case_ldmatrix_layout},
      {"gemm: cp.async + ldmatrix + mma, W[N,K], ragged, several k-tiles", case_gemm_nk},
      {"gemm: cp.async + ldmatrix.trans + mma, B[K,N], ragged", case_gemm_kn},
      {"cp.async multi-stage pipelined copy", case_cp_async_pipeline},
      {"planted bug: cp.async read before wait is visible", case_bug_cp_async_lax_wait},
      {"planted bug: missing barrier (ok forward, wrong reversed/shuffled)", case_bug_missing_barrier},
      {"planted bug: divergent __syncthreads names both lines", case_bug_divergent_barrier},
      {"planted bug: thread exits before a barrier", case_bug_exit_before_barrier},
      {"planted bug: warp op with bad mask", case_bug_bad_mask},
      {"planted bug: deadlock report", case_bug_deadlock},
      {"errors are exceptions; emulator usable afterwards", case_errors_recoverable},
  };
  int passed = 0, failed = 0;
  for (const Case& c : cases) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      c.fn();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::printf("PASS %s (%.1f ms)\n", c.name, ms);
      ++passed;
    } catch (const std::exception& e) {
      std::printf("FAIL %s: %s\n", c.name, e.what());
      ++failed;
    }
  }
#if defined(__SANITIZE_ADDRESS__)
  try {
    case_oob_write_asan(self);
    std::printf("PASS planted bug: out-of-bounds write caught by AddressSanitizer\n");
    ++passed;
  } catch (const std::exception& e) {
    std::printf("FAIL planted bug: out-of-bounds write caught by AddressSanitizer: %s\n", e.what());
    ++failed;
  }
#else
  (void)self;
  std::printf("SKIP planted bug: out-of-bounds write (needs the AddressSanitizer build)\n");
#endif
  try {
    const double ns256 = bench_barrier(256), ns1024 = bench_barrier(1024);
    std::printf("PASS barrier cost: %.1f ns per thread per __syncthreads (256 threads), %.1f ns (1024 threads)\n",
                ns256, ns1024);
    ++passed;
    const int M = 128, N = 128, K = 128;
    std::vector<__nv_bfloat16> A(M * K, __float2bfloat16(1.0f)), B(N * K, __float2bfloat16(1.0f));
    std::vector<float> C(M * N);
    const auto t0 = std::chrono::steady_clock::now();
    emu_test::launch_gemm_bf16(true, A.data(), B.data(), C.data(), M, N, K, nullptr);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    require(C[0] == static_cast<float>(K), "bench gemm result");
    std::printf("PASS emulated mma gemm %dx%dx%d: %.3f GFLOP/s\n", M, N, K, 2.0 * M * N * K / s * 1e-9);
    ++passed;
  } catch (const std::exception& e) {
    std::printf("FAIL benchmarks: %s\n", e.what());
    ++failed;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
