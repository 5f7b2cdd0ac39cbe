// The cpu backend's thread pool: N-1 workers plus the calling thread. LORA_NUM_THREADS sets N
// (default: the logical cores). parallel_for hands out task indices dynamically; a nested call
// from inside a task runs inline. Concurrent callers are serialised.
// A call returns as soon as all of its tasks are done: it never waits for a worker that has not
// woken up yet (on a shared machine a descheduled worker would otherwise stall every call).
// Tasks are claimed from one 64-bit word holding (generation, next index), so a worker that wakes
// late cannot run a task of a finished call.
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
  // Claims and runs tasks of generation gen (fn over [0, n)) until none is left.
  void run_tasks(uint32_t gen, const std::function<void(int64_t, int)>* fn, int64_t n, int thread);

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  uint32_t generation_ = 0;
  bool quit_ = false;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<uint64_t> claim_{0};  // generation << 32 | next task index
  std::atomic<int64_t> done_{0};    // tasks of the current generation finished
  std::exception_ptr error_;
};

ThreadPool& cpu_pool();
// Threads the pool was started with by default (LORA_NUM_THREADS or the logical cores).
int default_num_threads();
// The most threads the pool takes: 4 per logical core, at most 256. More only oversubscribe the
// machine (LORA_NUM_THREADS=1024 on 2 cores ran 31x slower).
int max_num_threads();

}  // namespace lora::ops
