#include "thread_pool.h"

#include <cstdlib>
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

void ThreadPool::run_tasks(int thread) {
  t_in_pool_task = true;
  for (;;) {
    const int64_t t = next_.fetch_add(1);
    if (t >= n_) break;
    try {
      (*fn_)(t, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }
  t_in_pool_task = false;
}

void ThreadPool::worker(int id) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
    }
    run_tasks(id);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--busy_ == 0) done_cv_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn) {
  if (n <= 0) return;
  if (t_in_pool_task || threads_ == 1 || n == 1) {
    for (int64_t t = 0; t < n; ++t) fn(t, 0);
    return;
  }
  std::lock_guard<std::mutex> call(call_mu_);
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    error_ = nullptr;
    busy_ = threads_ - 1;
    ++generation_;
  }
  cv_.notify_all();
  run_tasks(0);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return busy_ == 0; });
    fn_ = nullptr;
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

int default_num_threads() {
  if (const char* s = std::getenv("LORA_NUM_THREADS")) {
    const int n = std::atoi(s);
    if (n >= 1 && n <= 1024) return n;
  }
  const int c = cpu_features().logical_cores;
  return c >= 1 ? c : 1;
}

ThreadPool& cpu_pool() {
  static ThreadPool* pool = new ThreadPool(default_num_threads());  // never destroyed: workers outlive static dtors
  return *pool;
}

}  // namespace lora::ops
