// Small helpers for the cpu backend's threaded loops.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>

#include "../../ops/ops.h"
#include "../thread_pool.h"

namespace lora::ops::cpu {

// Splits [0, n) into chunks of at least `grain` and runs fn(begin, end) on the pool.
inline void parallel_range(const Ctx& ctx, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, threads * 4);
  if (chunks < 1) chunks = 1;
  const int64_t step = (n + chunks - 1) / chunks;
  chunks = (n + step - 1) / step;
  if (chunks == 1 || !ctx.pool) {
    fn(0, n);
    return;
  }
  ctx.pool->parallel_for(chunks, [&](int64_t c, int) { fn(c * step, std::min(n, (c + 1) * step)); });
}

// Deals blocks [0, n) round-robin to one slot per pool thread: fn(block, slot), slot in
// [0, pool size), each slot's blocks in order. Whichever thread runs a slot, it sees the same
// blocks in the same order on every call, so per-slot partial sums reduce deterministically.
inline void for_blocks_by_slot(const Ctx& ctx, int64_t n, const std::function<void(int64_t, int)>& fn) {
  const int slots = ctx.pool ? ctx.pool->size() : 1;
  auto run = [&](int64_t s, int) {
    for (int64_t b = s; b < n; b += slots) fn(b, static_cast<int>(s));
  };
  if (ctx.pool && slots > 1) ctx.pool->parallel_for(slots, run);
  else run(0, 0);
}

}  // namespace lora::ops::cpu
