// The cpu backend's thread pool: N-1 workers plus the calling thread. LORA_NUM_THREADS sets N
// (default: the logical cores). parallel_for hands out task indices dynamically; a nested call
// from inside a task runs inline. Concurrent callers are serialised.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lora::ops {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }
  // Runs fn(task, thread) for task in [0, n); thread in [0, size()). Exceptions in tasks are
  // caught and the first is rethrown on the caller after all tasks finished.
  void parallel_for(int64_t n, const std::function<void(int64_t task, int thread)>& fn);
  // Changes the number of threads (benchmarks); waits for running work.
  void resize(int threads);

 private:
  void start(int threads);
  void stop();
  void worker(int id);
  void run_tasks(int thread);

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  uint64_t generation_ = 0;
  bool quit_ = false;
  int busy_ = 0;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

ThreadPool& cpu_pool();
// Threads the pool was started with by default (LORA_NUM_THREADS or the logical cores).
int default_num_threads();

}  // namespace lora::ops
