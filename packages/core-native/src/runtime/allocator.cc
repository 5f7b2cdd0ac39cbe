#include "allocator.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "device_registry.h"
#include "errors.h"

namespace lora {

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  empty_cache_locked();
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t small = 512, large = size_t(2) << 20;
  const size_t g = bytes < (size_t(1) << 20) ? small : large;
  return (bytes + g - 1) / g * g;
}

void* CachingAllocator::allocate(size_t bytes, size_t* block_bytes) {
  // Anything above 1 PiB is a bug in the caller's size arithmetic, not a real request.
  if (bytes > (size_t(1) << 50)) {
    fail(LORA_ERR_OOM, "", "refusing to allocate " + std::to_string(bytes) + " bytes");
  }
  const size_t want = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.num_allocs++;
  void* p = nullptr;
  size_t got = want;
  // Reuse a cached block of exactly this rounded size, or a large block at most 2x bigger.
  auto it = free_blocks_.lower_bound(want);
  if (it != free_blocks_.end() && (it->first == want || (want >= (size_t(1) << 20) && it->first <= 2 * want))) {
    p = it->second;
    got = it->first;
    free_blocks_.erase(it);
    stats_.cache_hits++;
  } else {
    const char* err = "out of memory";
    p = raw_->alloc(want, &err);
    if (!p) {
      // Give the cache back and try once more before reporting OOM.
      empty_cache_locked();
      p = raw_->alloc(want, &err);
    }
    if (!p) {
      fail(LORA_ERR_OOM, "", std::string("could not allocate ") + std::to_string(want) + " bytes: " + err);
    }
    stats_.num_raw_allocs++;
    stats_.reserved += got;
  }
  stats_.allocated += got;
  stats_.requested += bytes;
  if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
  if (stats_.reserved > stats_.peak_reserved) stats_.peak_reserved = stats_.reserved;
  *block_bytes = got;
  return p;
}

void CachingAllocator::release(void* p, size_t block_bytes, size_t requested) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.allocated -= block_bytes;
  stats_.requested -= requested;
  free_blocks_.emplace(block_bytes, p);
}

void CachingAllocator::empty_cache_locked() {
  for (auto& kv : free_blocks_) {
    raw_->free(kv.second, kv.first);
    stats_.reserved -= kv.first;
  }
  free_blocks_.clear();
  raw_->trim();
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  empty_cache_locked();
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated = stats_.allocated;
  stats_.peak_reserved = stats_.reserved;
}

MemoryStats CachingAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

namespace {

// glibc raises its mmap threshold after the first free of a large block (up to 32 MiB), after
// which blocks of that size come from the heap and stay in the process when freed. That is what
// the kernels' per-call scratch wants (the heap's pages are reused call after call; a fixed low
// threshold mmapped and page-faulted every such buffer on every call: +15 ms per OPT-350m
// cross-entropy), but it also keeps what loading freed (f32 weights converted to bf16, file
// buffers): empty_cache() trims the heap, and the SDK empties the cache once a model is loaded.

// Host memory, 64-byte aligned so AVX-512 loads of a row start on a cache line.
struct HostMemory final : RawMemory {
  void* alloc(size_t bytes, const char** err) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) *err = "host malloc failed";
    return p;
  }
  void free(void* p, size_t) override { std::free(p); }
  void trim() override {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
  }
};

}  // namespace

CachingAllocator& allocator_for(Device d) {
  static HostMemory host_raw;
  static CachingAllocator cpu_alloc(&host_raw);
  static HostMemory emu_raw;
  static CachingAllocator emu_alloc(&emu_raw);
  switch (d.kind) {
    case DeviceKind::CPU: return cpu_alloc;
    case DeviceKind::EMU: return emu_alloc;
    case DeviceKind::CUDA: {
      CachingAllocator* a = cuda_allocator(d.index);
      if (!a) fail(LORA_ERR_DEVICE, "device", device_name(d) + " is not available: " + cuda_unavailable_reason());
      return *a;
    }
  }
  fail(LORA_ERR_DEVICE, "device", "unknown device");
}

}  // namespace lora
