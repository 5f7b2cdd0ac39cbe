// Benchmark support: the machine's measured peak per instruction kind and thread count.
//   benchPeak(kind: 'bf16'|'f32'|'int8', threads, iters) -> { seconds, ops, gops }
//     (threads in [1, maxNumThreads()], iters in [1, 2^26])
// Runs `threads` copies of the loop on the cpu pool at once (the pool must have >= threads).
#include <chrono>

#include "../cpu/avx512/peak.h"
#include "../cpu/thread_pool.h"
#include "../runtime/cpu_features.h"
#include "errors_js.h"
#include "ops_common.h"
#include "registry.h"

namespace lora::binding {

namespace {

constexpr int64_t kMaxPeakIters = int64_t(1) << 26;

Napi::Value BenchPeak(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Args a(info, "benchPeak");
    const std::string k = a.string(0, "kind");
    ops::cpu::PeakKind kind;
    double per;
    if (k == "bf16") { kind = ops::cpu::PeakKind::BF16; per = 24.0 * 64; }
    else if (k == "f32") { kind = ops::cpu::PeakKind::F32; per = 24.0 * 32; }
    else if (k == "int8") { kind = ops::cpu::PeakKind::INT8; per = 24.0 * 128; }
    else a.bad("kind", "'bf16', 'f32' or 'int8'");
    const int64_t threads = a.integer(1, "threads", 1, ops::max_num_threads());
    // The loop runs on the calling (JS) thread and cannot be interrupted, so one call is kept short:
    // 4e6 iterations of the bf16 loop took 42 ms on a loaded 2-core machine, so 2^26 about 0.7 s.
    const int64_t iters = a.integer(2, "iters", 1, kMaxPeakIters);
    if (!cpu_features().has_avx512_backend()) throw Error(LORA_ERR_UNSUPPORTED, "benchPeak: this CPU lacks AVX-512 BF16/VNNI");
    ops::ThreadPool& pool = ops::cpu_pool();
    if (pool.size() < threads) pool.resize(static_cast<int>(threads));
    volatile double sink = 0;
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(threads, [&](int64_t, int) { sink = sink + ops::cpu::peak_loop(kind, iters); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Napi::Object o = Napi::Object::New(info.Env());
    const double total = per * static_cast<double>(iters) * static_cast<double>(threads);
    o.Set("seconds", s);
    o.Set("ops", total);
    o.Set("gops", total / s / 1e9);
    return o;
  });
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("benchPeak", Napi::Function::New<BenchPeak>(env, "benchPeak"));
}

const Registrar reg("ops_bench", &Register);

}  // namespace

}  // namespace lora::binding
