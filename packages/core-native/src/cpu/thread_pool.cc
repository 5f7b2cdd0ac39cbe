#include "thread_pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "../runtime/cpu_features.h"

namespace lora::ops {

namespace {
thread_local bool t_in_pool_task = false;
}

ThreadPool::ThreadPool(int threads) { start(threads); }
ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int threads) {
  threads_ = threads < 1 ? 1 : threads;
  quit_ = false;
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::resize(int threads) {
  std::lock_guard<std::mutex> call(call_mu_);
  stop();
  start(threads);
}

void ThreadPool::run_tasks(uint32_t gen, const std::function<void(int64_t, int)>* fn, int64_t n, int thread) {
  const bool outer = t_in_pool_task;
  t_in_pool_task = true;
  uint64_t v = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(v >> 32) != gen) break;
    const int64_t t = static_cast<int64_t>(v & 0xFFFFFFFFu);
    if (t >= n) break;
    if (!claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    try {
      (*fn)(t, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_all();
    }
    v = claim_.load(std::memory_order_acquire);
  }
  t_in_pool_task = outer;
}

void ThreadPool::worker(int id) {
  uint32_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int)>* fn;
    int64_t n;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      fn = fn_;
      n = n_;
    }
    run_tasks(seen, fn, n, id);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn) {
  if (n <= 0) return;
  if (t_in_pool_task || threads_ == 1 || n == 1) {
    for (int64_t t = 0; t < n; ++t) fn(t, 0);
    return;
  }
  if (n > 0xFFFFFFFFll) throw std::length_error("ThreadPool::parallel_for: too many tasks");
  std::lock_guard<std::mutex> call(call_mu_);
  uint32_t gen;
  {
    std::lock_guard<std::mutex> lk(mu_);
    gen = ++generation_;
    fn_ = &fn;
    n_ = n;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    claim_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
  }
  cv_.notify_all();
  run_tasks(gen, &fn, n, 0);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return done_.load(std::memory_order_acquire) == n; });
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

int max_num_threads() {
  const int c = cpu_features().logical_cores;
  return std::min(256, 4 * std::max(c, 1));
}

int default_num_threads() {
  const int c = std::max(cpu_features().logical_cores, 1);
  const char* s = std::getenv("LORA_NUM_THREADS");
  if (!s || !*s) return c;
  // The JS loader refuses a bad value with a coded error; a worker that loads the addon directly
  // gets this warning instead, once, and a pool that cannot oversubscribe the machine.
  char* end = nullptr;
  const long n = std::strtol(s, &end, 10);
  const int hi = max_num_threads();
  if (*end == '\0' && n >= 1 && n <= hi) return static_cast<int>(n);
  const int use = *end == '\0' && n > hi ? hi : c;
  std::fprintf(stderr, "lora: LORA_NUM_THREADS='%.32s' is not an integer in [1, %d] (ERR_LORA_INVALID_ARG); using %d threads\n", s, hi, use);
  return use;
}

ThreadPool& cpu_pool() {
  static ThreadPool* pool = new ThreadPool(default_num_threads());  // never destroyed: workers outlive static dtors
  return *pool;
}

}  // namespace lora::ops
