// A caching allocator per device, in the spirit of PyTorch's: freed blocks go to a size-keyed free
// list and are reused, so a training loop that allocates the same shapes every step stops paying
// for malloc/cudaMalloc after the first step. Reports allocated (in use), reserved (in use + cached)
// and the peaks of both. Thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

#include "device.h"

namespace lora {

struct MemoryStats {
  uint64_t allocated = 0;       // bytes handed out and not yet freed (rounded block sizes)
  uint64_t reserved = 0;        // allocated + cached blocks held for reuse
  uint64_t peak_allocated = 0;
  uint64_t peak_reserved = 0;
  uint64_t requested = 0;       // bytes actually asked for by live allocations
  uint64_t num_allocs = 0;      // calls to allocate() since start
  uint64_t num_raw_allocs = 0;  // calls that reached the underlying malloc / cudaMalloc
  uint64_t cache_hits = 0;
};

// The raw memory source under a caching allocator (host malloc, cudaMalloc, ...).
struct RawMemory {
  virtual ~RawMemory() = default;
  // Returns nullptr on failure and leaves a reason in *err.
  virtual void* alloc(size_t bytes, const char** err) = 0;
  virtual void free(void* p, size_t bytes) = 0;
  // Hands memory freed to the backing allocator back to the system where that allocator keeps it
  // (host: glibc's heap; called by empty_cache).
  virtual void trim() {}
};

class CachingAllocator {
 public:
  explicit CachingAllocator(RawMemory* raw) : raw_(raw) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Throws lora::Error(ERR_LORA_OOM) when the raw source fails even after the cache is released.
  void* allocate(size_t bytes, size_t* block_bytes);
  void release(void* p, size_t block_bytes, size_t requested);
  // Returns cached (unused) blocks to the raw source.
  void empty_cache();
  void reset_peak();
  MemoryStats stats();

  // Block size for a request: 512 B granularity below 1 MiB, 2 MiB above (fewer distinct sizes
  // so blocks are reused across slightly different shapes).
  static size_t round_size(size_t bytes);

 private:
  void empty_cache_locked();
  RawMemory* raw_;
  std::mutex mu_;
  std::multimap<size_t, void*> free_blocks_;
  MemoryStats stats_;
};

// The allocator of a device; created on first use. Throws for a device whose backend is absent.
CachingAllocator& allocator_for(Device d);

}  // namespace lora
