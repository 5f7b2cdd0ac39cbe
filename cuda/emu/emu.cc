// lora CUDA emulator runtime: fibers, per-block scheduler, warp collectives, worker pool.
// See emu.h for the model and cuda/README.md for the user-facing description.
#include "emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define LORA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LORA_EMU_ASAN 1
#endif
#endif

#if defined(LORA_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(LORA_EMU_UCONTEXT)
#define LORA_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

__thread uint3 threadIdx;
__thread uint3 blockIdx;
__thread uint3 blockDim;
__thread uint3 gridDim;

// ---------------------------------------------------------------------------
// x86-64 System V context switch.
//   lora_emu_switch(save, next): pushes the callee-saved registers on the current stack,
//   stores the stack pointer in *save, loads `next` as the stack pointer, pops the registers
//   saved there and returns into that context. A fresh fiber's stack is prepared so that the
//   first switch "returns" into lora_emu_trampoline with the Fiber* in r12.
// ---------------------------------------------------------------------------
#if defined(LORA_EMU_ASM_SWITCH)
extern "C" {
__attribute__((visibility("hidden"))) void lora_emu_switch(void** save_sp, void* next_sp);
__attribute__((visibility("hidden"))) void lora_emu_trampoline();
}
asm(R"(
    .text
    .p2align 4
    .globl lora_emu_switch
    .hidden lora_emu_switch
    .type lora_emu_switch, @function
lora_emu_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size lora_emu_switch, .-lora_emu_switch

    .p2align 4
    .globl lora_emu_trampoline
    .hidden lora_emu_trampoline
    .type lora_emu_trampoline, @function
lora_emu_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    call lora_emu_fiber_main
    ud2
    .cfi_endproc
    .size lora_emu_trampoline, .-lora_emu_trampoline
)");
#endif

extern "C" __attribute__((visibility("hidden"), used, noreturn)) void lora_emu_fiber_main(void* fiber);

namespace lora::emu {
namespace {

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------
std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  int n = std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  if (n < 0) return std::string();
  if (static_cast<size_t>(n) < sizeof buf) return std::string(buf, static_cast<size_t>(n));
  std::string out(static_cast<size_t>(n) + 1, '\0');
  va_start(ap, f);
  std::vsnprintf(&out[0], out.size(), f, ap);
  va_end(ap);
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string site_str(Site s) { return fmt("%s:%d", s.file ? s.file : "?", s.line); }

bool same_site(Site a, Site b) {
  return a.line == b.line && (a.file == b.file || (a.file && b.file && std::strcmp(a.file, b.file) == 0));
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// lane list like "0-15,17"
std::string lanes_str(uint32_t mask) {
  std::string out;
  for (int i = 0; i < 32;) {
    if (!(mask >> i & 1u)) { ++i; continue; }
    int j = i;
    while (j + 1 < 32 && (mask >> (j + 1) & 1u)) ++j;
    if (!out.empty()) out += ",";
    out += (i == j) ? fmt("%d", i) : fmt("%d-%d", i, j);
    i = j + 1;
  }
  return out.empty() ? std::string("none") : out;
}

// ---------------------------------------------------------------------------
// Sanitizer fiber annotations (no-ops without ASan)
// ---------------------------------------------------------------------------
inline void asan_start_switch(void** fake_save, const void* bottom, size_t size) {
#if defined(LORA_EMU_ASAN)
  __sanitizer_start_switch_fiber(fake_save, bottom, size);
#else
  (void)fake_save, (void)bottom, (void)size;
#endif
}
inline void asan_finish_switch(void* fake, const void** bottom_old, size_t* size_old) {
#if defined(LORA_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, bottom_old, size_old);
#else
  (void)fake, (void)bottom_old, (void)size_old;
#endif
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------
std::mutex g_cfg_mu;
bool g_order_override = false;
Order g_order = Order::Forward;
uint64_t g_seed = 0;

std::mutex g_attr_mu;
std::unordered_map<const void*, int> g_max_dyn_smem;

constexpr size_t kDefaultDynSmem = 48 * 1024;   // without cudaFuncSetAttribute, as on the GPU
constexpr size_t kMaxDynSmem = 227 * 1024;      // sm_90 opt-in limit (sm_80: 163 KiB, sm_89: 99 KiB)
constexpr unsigned kMaxThreads = 1024;

// ---------------------------------------------------------------------------
// Fibers and the per-OS-thread block scheduler
// ---------------------------------------------------------------------------
enum class St : uint8_t { Runnable, Barrier, Warp, Exited };

enum WarpOp : int {
  kOpShflIdx = kShflIdx,
  kOpShflUp = kShflUp,
  kOpShflDown = kShflDown,
  kOpShflXor = kShflXor,
  kOpBallot = 10,
  kOpSyncwarp = 11,
  kOpMmaBf16 = 12,
  kOpMmaF16 = 13,
  kOpLdmatrix = 14,
};

struct WarpArgs {
  int op = 0;
  unsigned mask = 0;
  const char* name = "";
  unsigned long long value = 0;
  int arg = 0;
  int width = 32;
  const void* ptr = nullptr;
  int num = 0;
  bool trans = false;
  uint32_t a[4] = {0, 0, 0, 0};
  uint32_t b[2] = {0, 0};
  float c[4] = {0, 0, 0, 0};
  // results
  unsigned long long result = 0;
  uint32_t out[4] = {0, 0, 0, 0};
  float d[4] = {0, 0, 0, 0};
};

struct CpOp {
  void* dst;
  const void* src;
  int bytes;
  int src_bytes;
  unsigned group;
};

struct Fiber {
  void* sp = nullptr;
#if !defined(LORA_EMU_ASM_SWITCH)
  ucontext_t uc;
#endif
  char* map = nullptr;  // mapping start (guard page)
  size_t map_size = 0;
  char* stack_lo = nullptr;
  size_t stack_size = 0;
  void* asan_fake = nullptr;

  uint3 tid{0, 0, 0};
  unsigned linear = 0;
  St st = St::Exited;
  Site site{nullptr, 0};
  WarpArgs w;
  std::vector<CpOp> cp_ops;
  unsigned cp_group = 0;  // index of the currently open (uncommitted) group
};

struct Job;

struct Worker {
  std::vector<Fiber*> fibers;  // stable addresses; stacks kept across blocks
  size_t stack_bytes = 0;
  bool stacks_dirty = false;
  bool in_block = false;

  // current launch / block
  const LaunchSpec* spec = nullptr;
  unsigned n = 0;
  unsigned exited = 0;
  unsigned bar_waiting = 0;
  Site bar_site{nullptr, 0};
  unsigned bar_first = 0;
  int bar_acc = 0;
  int bar_result = 0;
  bool restart = false;
  std::vector<uint32_t> warp_pending, warp_exited, warp_exists;
  bool failed = false;
  std::string error;
  unsigned char* smem = nullptr;
  size_t smem_size = 0;
  Fiber* cur = nullptr;
  std::vector<unsigned> perm;
  uint64_t rng = 0;
  Order order = Order::Forward;

  // scheduler context
  void* sched_sp = nullptr;
#if !defined(LORA_EMU_ASM_SWITCH)
  ucontext_t sched_uc;
#endif
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
  void* sched_fake = nullptr;

  ~Worker() {
    for (Fiber* f : fibers) {
      if (f->map) munmap(f->map, f->map_size);
      delete f;
    }
    ::operator delete(smem, std::align_val_t(128));
  }

  std::string where(const Fiber& f) const {
    return fmt("kernel %s (launched at %s) block (%u,%u,%u) thread (%u,%u,%u)", spec->kernel_name,
               site_str(spec->site).c_str(), blockIdx.x, blockIdx.y, blockIdx.z, f.tid.x, f.tid.y, f.tid.z);
  }
  std::string block_where() const {
    return fmt("kernel %s (launched at %s) block (%u,%u,%u)", spec->kernel_name, site_str(spec->site).c_str(),
               blockIdx.x, blockIdx.y, blockIdx.z);
  }
  std::string tid_str(unsigned linear) const {
    const Fiber& f = *fibers[linear];
    return fmt("(%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z);
  }

  void record_failure(std::string msg) {
    if (!failed) {
      failed = true;
      error = std::move(msg);
    }
  }

  void ensure_fibers(unsigned count);
  void prepare_fiber(Fiber& f);
  void resume(Fiber& f);
  void yield(Fiber& f);
  bool run_block(uint64_t linear_block);
  std::string deadlock_report() const;
  void on_exit(Fiber& f);
  void warp_arrive(Fiber& f, const WarpArgs& args, Site site);
  void warp_execute(unsigned warp, unsigned mask, Site site);
  void complete_cp_async(Fiber& f, unsigned below_group);
};

__thread Worker* tl_worker = nullptr;  // set while this OS thread executes a launch

Worker& this_worker() {
  static thread_local Worker w;
  return w;
}

void Worker::ensure_fibers(unsigned count) {
  const long page = sysconf(_SC_PAGESIZE);
  while (fibers.size() < count) {
    auto* f = new Fiber();
    size_t size = (stack_bytes + static_cast<size_t>(page) - 1) / static_cast<size_t>(page) * static_cast<size_t>(page);
    size_t total = size + static_cast<size_t>(page);
    void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
    if (m == MAP_FAILED) {
      delete f;
      throw EmuError(fmt("lora emu: cannot map a %zu-byte fiber stack (thread %zu of the block)", total,
                         fibers.size()));
    }
    if (mprotect(m, static_cast<size_t>(page), PROT_NONE) != 0) {
      munmap(m, total);
      delete f;
      throw EmuError("lora emu: cannot protect a fiber stack guard page");
    }
    f->map = static_cast<char*>(m);
    f->map_size = total;
    f->stack_lo = f->map + page;
    f->stack_size = size;
    fibers.push_back(f);
  }
}

#if !defined(LORA_EMU_ASM_SWITCH)
void ucontext_entry(unsigned hi, unsigned lo) {
  uintptr_t p = (static_cast<uintptr_t>(hi) << 32) | static_cast<uintptr_t>(lo);
  lora_emu_fiber_main(reinterpret_cast<void*>(p));
}
#endif

void Worker::prepare_fiber(Fiber& f) {
#if defined(LORA_EMU_ASM_SWITCH)
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack_lo) + f.stack_size) & ~static_cast<uintptr_t>(15);
  // 7 slots popped by lora_emu_switch (r15 r14 r13 r12 rbx rbp, return address); chosen so that
  // the trampoline starts with a 16-byte aligned stack and its `call` gives the ABI alignment.
  void** sp = reinterpret_cast<void**>(top - 72);
  sp[0] = nullptr;                                          // r15
  sp[1] = nullptr;                                          // r14
  sp[2] = nullptr;                                          // r13
  sp[3] = &f;                                               // r12 -> first argument of fiber main
  sp[4] = nullptr;                                          // rbx
  sp[5] = nullptr;                                          // rbp
  sp[6] = reinterpret_cast<void*>(&lora_emu_trampoline);    // return address
  f.sp = sp;
#else
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stack_lo;
  f.uc.uc_stack.ss_size = f.stack_size;
  f.uc.uc_link = nullptr;
  uintptr_t p = reinterpret_cast<uintptr_t>(&f);
  makecontext(&f.uc, reinterpret_cast<void (*)()>(&ucontext_entry), 2, static_cast<unsigned>(p >> 32),
              static_cast<unsigned>(p & 0xFFFFFFFFu));
#endif
}

inline void Worker::resume(Fiber& f) {
  cur = &f;
  threadIdx = f.tid;
  asan_start_switch(&sched_fake, f.stack_lo, f.stack_size);
#if defined(LORA_EMU_ASM_SWITCH)
  lora_emu_switch(&sched_sp, f.sp);
#else
  swapcontext(&sched_uc, &f.uc);
#endif
  asan_finish_switch(sched_fake, nullptr, nullptr);
  cur = nullptr;
}

inline void Worker::yield(Fiber& f) {
  asan_start_switch(&f.asan_fake, sched_bottom, sched_size);
#if defined(LORA_EMU_ASM_SWITCH)
  lora_emu_switch(&f.sp, sched_sp);
#else
  swapcontext(&f.uc, &sched_uc);
#endif
  asan_finish_switch(f.asan_fake, &sched_bottom, &sched_size);
}

void Worker::complete_cp_async(Fiber& f, unsigned below_group) {
  size_t done = 0;
  for (; done < f.cp_ops.size() && f.cp_ops[done].group < below_group; ++done) {
    const CpOp& op = f.cp_ops[done];
    if (op.src_bytes > 0) std::memcpy(op.dst, op.src, static_cast<size_t>(op.src_bytes));
    if (op.src_bytes < op.bytes)
      std::memset(static_cast<char*>(op.dst) + op.src_bytes, 0, static_cast<size_t>(op.bytes - op.src_bytes));
  }
  f.cp_ops.erase(f.cp_ops.begin(), f.cp_ops.begin() + static_cast<std::ptrdiff_t>(done));
}

void Worker::on_exit(Fiber& f) {
  // Outstanding cp.async copies still land in shared memory when a thread exits.
  complete_cp_async(f, ~0u);
  f.st = St::Exited;
  ++exited;
  const unsigned warp = f.linear / 32, bit = 1u << (f.linear % 32);
  warp_exited[warp] |= bit;
  if (bar_waiting > 0) {
    record_failure(fmt("%s exited while %u thread(s) wait at __syncthreads() at %s (first: thread %s); every "
                       "thread of the block must reach each barrier",
                       where(f).c_str(), bar_waiting, site_str(bar_site).c_str(), tid_str(bar_first).c_str()));
    return;
  }
  uint32_t pend = warp_pending[warp];
  for (unsigned l = 0; l < 32; ++l) {
    if (!(pend >> l & 1u)) continue;
    const Fiber& o = *fibers[warp * 32 + l];
    if (o.w.mask & bit) {
      record_failure(fmt("%s exited, but lane %u of its warp waits for it in %s at %s (mask 0x%08x)", where(f).c_str(),
                         l, o.w.name, site_str(o.site).c_str(), o.w.mask));
      return;
    }
  }
}

std::string Worker::deadlock_report() const {
  std::string out = fmt("deadlock in %s: no thread can make progress", block_where().c_str());
  unsigned i = 0;
  while (i < n) {
    const Fiber& f = *fibers[i];
    unsigned j = i;
    auto same = [&](const Fiber& g) {
      if (g.st != f.st) return false;
      if (f.st == St::Exited || f.st == St::Runnable) return true;
      if (!same_site(g.site, f.site)) return false;
      return f.st != St::Warp || (g.w.mask == f.w.mask && g.w.op == f.w.op && g.linear / 32 == f.linear / 32);
    };
    while (j + 1 < n && same(*fibers[j + 1])) ++j;
    std::string who = (i == j) ? fmt("thread %s", tid_str(i).c_str())
                               : fmt("threads %s..%s (linear %u-%u)", tid_str(i).c_str(), tid_str(j).c_str(), i, j);
    switch (f.st) {
      case St::Exited: out += fmt("\n  %s: exited", who.c_str()); break;
      case St::Runnable: out += fmt("\n  %s: runnable", who.c_str()); break;
      case St::Barrier:
        out += fmt("\n  %s: wait at __syncthreads() at %s (%u of %u threads arrived)", who.c_str(),
                   site_str(f.site).c_str(), bar_waiting, n);
        break;
      case St::Warp: {
        unsigned warp = f.linear / 32;
        uint32_t missing = f.w.mask & ~warp_pending[warp];
        out += fmt("\n  %s: wait in %s at %s (warp %u, mask 0x%08x; lanes %s never arrived)", who.c_str(), f.w.name,
                   site_str(f.site).c_str(), warp, f.w.mask, lanes_str(missing).c_str());
        break;
      }
    }
    i = j + 1;
  }
  return out;
}

bool Worker::run_block(uint64_t lin) {
  const dim3 g = spec->grid;
  blockIdx = uint3{static_cast<unsigned>(lin % g.x), static_cast<unsigned>((lin / g.x) % g.y),
                   static_cast<unsigned>(lin / (static_cast<uint64_t>(g.x) * g.y))};
  const dim3 b = spec->block;
  n = b.x * b.y * b.z;
  const unsigned nwarps = (n + 31) / 32;
  exited = 0;
  bar_waiting = 0;
  bar_acc = 0;
  restart = false;
  failed = false;
  error.clear();
  warp_pending.assign(nwarps, 0u);
  warp_exited.assign(nwarps, 0u);
  warp_exists.assign(nwarps, 0xFFFFFFFFu);
  if (n % 32) warp_exists[nwarps - 1] = (1u << (n % 32)) - 1u;

  ensure_fibers(n);
#if defined(LORA_EMU_ASAN)
  if (stacks_dirty) {
    for (Fiber* f : fibers) ASAN_UNPOISON_MEMORY_REGION(f->stack_lo, f->stack_size);
    stacks_dirty = false;
  }
#endif
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = *fibers[i];
    f.linear = i;
    f.tid = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
    f.st = St::Runnable;
    f.site = Site{nullptr, 0};
    f.cp_ops.clear();
    f.cp_group = 0;
    f.asan_fake = nullptr;
    prepare_fiber(f);
  }
  if (smem_size) std::memset(smem, 0xFF, smem_size);

  perm.resize(n);
  for (unsigned i = 0; i < n; ++i) perm[i] = (order == Order::Reversed) ? n - 1 - i : i;

  in_block = true;
  for (;;) {
    if (order == Order::Shuffled) {
      for (unsigned i = n; i > 1; --i) std::swap(perm[i - 1], perm[splitmix64(rng) % i]);
    }
    restart = false;
    unsigned ran = 0;
    for (unsigned k = 0; k < n; ++k) {
      Fiber& f = *fibers[perm[k]];
      if (f.st != St::Runnable) continue;
      resume(f);
      ++ran;
      if (failed || restart) break;
    }
    if (failed) break;
    if (exited == n) break;
    if (ran == 0) {
      record_failure(deadlock_report());
      break;
    }
  }
  in_block = false;
  if (failed) stacks_dirty = true;  // abandoned fibers leave frames (and ASan poison) behind
  return !failed;
}

void Worker::warp_arrive(Fiber& f, const WarpArgs& args, Site site) {
  const unsigned warp = f.linear / 32, lane = f.linear % 32, bit = 1u << lane;
  const unsigned mask = args.mask;
  if (!(mask & bit))
    throw EmuError(fmt("%s: %s at %s with mask 0x%08x that does not include the calling lane %u", where(f).c_str(),
                       args.name, site_str(site).c_str(), mask, lane));
  if (mask & ~warp_exists[warp])
    throw EmuError(fmt("%s: %s at %s with mask 0x%08x names lanes %s that do not exist (the block has %u threads)",
                       where(f).c_str(), args.name, site_str(site).c_str(), mask,
                       lanes_str(mask & ~warp_exists[warp]).c_str(), n));
  if (mask & warp_exited[warp])
    throw EmuError(fmt("%s: %s at %s with mask 0x%08x names lanes %s that have already exited", where(f).c_str(),
                       args.name, site_str(site).c_str(), mask, lanes_str(mask & warp_exited[warp]).c_str()));
  const uint32_t pend = warp_pending[warp];
  for (unsigned l = 0; l < 32; ++l) {
    if (!(pend >> l & 1u)) continue;
    const Fiber& o = *fibers[warp * 32 + l];
    const bool named_by_me = (mask >> l) & 1u;
    const bool names_me = (o.w.mask & bit) != 0;
    // Mutual wait in two different collectives can never resolve. (A lane waiting elsewhere that
    // does not wait for us may still come; if it never does, the deadlock check reports it.)
    if (named_by_me && names_me && (o.w.mask != mask || o.w.op != args.op)) {
      throw EmuError(fmt("%s: %s at %s with mask 0x%08x, but lane %u waits in %s at %s with mask 0x%08x; the lanes "
                         "of a warp collective must all execute the same operation with the same mask",
                         where(f).c_str(), args.name, site_str(site).c_str(), mask, l, o.w.name,
                         site_str(o.site).c_str(), o.w.mask));
    }
  }
  f.w = args;
  f.site = site;
  f.st = St::Warp;
  warp_pending[warp] = pend | bit;
  if ((warp_pending[warp] & mask) == mask) {
    warp_execute(warp, mask, site);
    warp_pending[warp] &= ~mask;
    for (unsigned l = 0; l < 32; ++l)
      if (mask >> l & 1u) fibers[warp * 32 + l]->st = St::Runnable;
  }
  yield(f);
}

inline uint16_t lo16(uint32_t v) { return static_cast<uint16_t>(v & 0xFFFFu); }
inline uint16_t hi16(uint32_t v) { return static_cast<uint16_t>(v >> 16); }

void Worker::warp_execute(unsigned warp, unsigned mask, Site site) {
  Fiber* lanes[32];
  for (unsigned l = 0; l < 32; ++l) lanes[l] = (mask >> l & 1u) ? fibers[warp * 32 + l] : nullptr;
  Fiber& first = *lanes[__builtin_ctz(mask)];
  const int op = first.w.op;
  switch (op) {
    case kOpShflIdx:
    case kOpShflUp:
    case kOpShflDown:
    case kOpShflXor: {
      for (unsigned l = 0; l < 32; ++l) {
        if (!lanes[l]) continue;
        WarpArgs& w = lanes[l]->w;
        const int width = w.width;
        if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
          throw EmuError(fmt("%s: %s at %s: width %d is not a power of two in [1, 32]", where(*lanes[l]).c_str(),
                             w.name, site_str(site).c_str(), width));
        const int seg = static_cast<int>(l) & ~(width - 1);
        int src = static_cast<int>(l);
        switch (op) {
          case kOpShflIdx: src = seg + (w.arg & (width - 1)); break;
          case kOpShflUp: src = (static_cast<int>(l) - seg - w.arg >= 0) ? static_cast<int>(l) - w.arg : static_cast<int>(l); break;
          case kOpShflDown: src = (static_cast<int>(l) - seg + w.arg < width) ? static_cast<int>(l) + w.arg : static_cast<int>(l); break;
          default: {
            int t = static_cast<int>(l) ^ w.arg;
            src = (t >= seg && t < seg + width) ? t : static_cast<int>(l);
            break;
          }
        }
        if (src < 0 || src > 31 || !lanes[src])
          throw EmuError(fmt("%s: %s at %s reads lane %d, which is not in mask 0x%08x (its value is undefined)",
                             where(*lanes[l]).c_str(), w.name, site_str(site).c_str(), src, mask));
        w.result = lanes[src]->w.value;
      }
      break;
    }
    case kOpBallot: {
      unsigned votes = 0;
      for (unsigned l = 0; l < 32; ++l)
        if (lanes[l] && lanes[l]->w.value) votes |= 1u << l;
      for (unsigned l = 0; l < 32; ++l)
        if (lanes[l]) lanes[l]->w.result = votes;
      break;
    }
    case kOpSyncwarp: break;
    case kOpMmaBf16:
    case kOpMmaF16: {
      if (mask != 0xFFFFFFFFu)
        throw EmuError(fmt("%s: mma.sync at %s needs all 32 lanes of the warp (mask 0x%08x)", where(first).c_str(),
                           site_str(site).c_str(), mask));
      // Assemble A (16x16, row major), B (16x8, K x N) and C (16x8) from the PTX fragment layouts:
      //   g = lane >> 2, t = lane & 3
      //   A regs: a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
      //   B regs: b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
      //   C/D:    c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
      float A[16][16], B[16][8], C[16][8];
      auto cvt = [op](uint16_t h) {
        return op == kOpMmaBf16 ? lora::emu::bf16_bits_to_f32(h) : lora::emu::f16_bits_to_f32(h);
      };
      for (unsigned l = 0; l < 32; ++l) {
        const WarpArgs& w = lanes[l]->w;
        const unsigned g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; ++r) {
          const unsigned row = g + ((r & 1) ? 8 : 0), col = 2 * t + ((r & 2) ? 8 : 0);
          A[row][col] = cvt(lo16(w.a[r]));
          A[row][col + 1] = cvt(hi16(w.a[r]));
        }
        for (int r = 0; r < 2; ++r) {
          const unsigned k = 2 * t + (r ? 8 : 0);
          B[k][g] = cvt(lo16(w.b[r]));
          B[k + 1][g] = cvt(hi16(w.b[r]));
        }
        C[g][2 * t] = w.c[0];
        C[g][2 * t + 1] = w.c[1];
        C[g + 8][2 * t] = w.c[2];
        C[g + 8][2 * t + 1] = w.c[3];
      }
      float D[16][8];
      for (int i = 0; i < 16; ++i)
        for (int j = 0; j < 8; ++j) {
          float acc = C[i][j];
          for (int k = 0; k < 16; ++k) acc = std::fma(A[i][k], B[k][j], acc);  // products of 16-bit floats are exact
          D[i][j] = acc;
        }
      for (unsigned l = 0; l < 32; ++l) {
        WarpArgs& w = lanes[l]->w;
        const unsigned g = l >> 2, t = l & 3;
        w.d[0] = D[g][2 * t];
        w.d[1] = D[g][2 * t + 1];
        w.d[2] = D[g + 8][2 * t];
        w.d[3] = D[g + 8][2 * t + 1];
      }
      break;
    }
    case kOpLdmatrix: {
      if (mask != 0xFFFFFFFFu)
        throw EmuError(fmt("%s: ldmatrix at %s needs all 32 lanes of the warp (mask 0x%08x)", where(first).c_str(),
                           site_str(site).c_str(), mask));
      const int num = first.w.num;
      const bool trans = first.w.trans;
      for (unsigned l = 0; l < 32; ++l)
        if (lanes[l]->w.num != num || lanes[l]->w.trans != trans)
          throw EmuError(fmt("%s: ldmatrix at %s: lanes disagree on .x%d/.trans", where(*lanes[l]).c_str(),
                             site_str(site).c_str(), num));
      // Matrix i (8x8 of 16-bit) takes its row r from the address supplied by lane 8*i + r.
      uint16_t M[4][8][8];
      for (int i = 0; i < num; ++i)
        for (int r = 0; r < 8; ++r) {
          const Fiber& src = *lanes[8 * i + r];
          const void* p = src.w.ptr;
          if (p == nullptr || (reinterpret_cast<uintptr_t>(p) & 15u) != 0)
            throw EmuError(fmt("%s: ldmatrix at %s: row address %p of matrix %d row %d is not 16-byte aligned",
                               where(src).c_str(), site_str(site).c_str(), p, i, r));
          std::memcpy(M[i][r], p, 16);
        }
      // Each lane receives, per matrix, the pair (row g, cols 2t, 2t+1); with .trans the pair
      // (rows 2t, 2t+1, col g) — i.e. the fragment of the transposed matrix.
      for (unsigned l = 0; l < 32; ++l) {
        const unsigned g = l >> 2, t = l & 3;
        WarpArgs& w = lanes[l]->w;
        for (int i = 0; i < num; ++i) {
          uint16_t e0, e1;
          if (trans) {
            e0 = M[i][2 * t][g];
            e1 = M[i][2 * t + 1][g];
          } else {
            e0 = M[i][g][2 * t];
            e1 = M[i][g][2 * t + 1];
          }
          w.out[i] = static_cast<uint32_t>(e0) | (static_cast<uint32_t>(e1) << 16);
        }
      }
      break;
    }
    default:
      throw EmuError(fmt("%s: unknown warp operation %d", where(first).c_str(), op));
  }
}

// ---------------------------------------------------------------------------
// Launches and the worker pool
// ---------------------------------------------------------------------------
struct Job {
  const LaunchSpec* spec;
  uint64_t total;
  Order order;
  uint64_t seed;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  uint64_t fail_block = ~0ull;
  std::string error;
};

void work(Job& job) {
  Worker& w = this_worker();
  if (w.in_block || tl_worker) {
    std::lock_guard<std::mutex> lk(job.mu);
    job.error = "lora emu: kernel launched from inside a running kernel (dynamic parallelism is not supported)";
    job.failed = true;
    return;
  }
  tl_worker = &w;
  w.spec = job.spec;
  w.order = job.order;
  w.stack_bytes = fiber_stack_bytes();
  const size_t smem = job.spec->smem_bytes;
  try {
    // exact-size allocation so AddressSanitizer sees overruns of dynamic shared memory
    w.smem = static_cast<unsigned char*>(::operator new(smem, std::align_val_t(128)));
    w.smem_size = smem;
  } catch (const std::bad_alloc&) {
    std::lock_guard<std::mutex> lk(job.mu);
    job.error = "lora emu: cannot allocate dynamic shared memory";
    job.failed = true;
    tl_worker = nullptr;
    return;
  }
  blockDim = uint3{job.spec->block.x, job.spec->block.y, job.spec->block.z};
  gridDim = uint3{job.spec->grid.x, job.spec->grid.y, job.spec->grid.z};
  for (;;) {
    if (job.failed.load(std::memory_order_relaxed)) break;
    const uint64_t b = job.next.fetch_add(1, std::memory_order_relaxed);
    if (b >= job.total) break;
    uint64_t s = job.seed ^ (b * 0xD1B54A32D192ED03ull);
    w.rng = splitmix64(s);
    bool ok;
    std::string err;
    try {
      ok = w.run_block(b);
      if (!ok) err = w.error;
    } catch (const std::exception& e) {  // stack allocation failures
      ok = false;
      err = e.what();
    }
    if (!ok) {
      std::lock_guard<std::mutex> lk(job.mu);
      if (!job.failed.load() || b < job.fail_block) {
        job.fail_block = b;
        job.error = err;
      }
      job.failed = true;
      break;
    }
  }
  ::operator delete(w.smem, std::align_val_t(128));
  w.smem = nullptr;
  w.smem_size = 0;
  w.spec = nullptr;
  tl_worker = nullptr;
}

class Pool {
 public:
  static Pool& instance() {
    static Pool p;
    return p;
  }
  void run(Job& job) {
    const unsigned extra = worker_count() - 1;
    if (extra == 0 || job.total == 1) {
      work(job);
      return;
    }
    {
      std::unique_lock<std::mutex> lk(mu_);
      while (threads_.size() < extra) threads_.emplace_back([this, g = gen_] { loop(g); });
      job_ = &job;
      ++gen_;
      busy_ = static_cast<unsigned>(threads_.size());
    }
    cv_start_.notify_all();
    work(job);
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [this] { return busy_ == 0; });
    job_ = nullptr;
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_start_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void loop(uint64_t seen) {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_start_.wait(lk, [&] { return stop_ || gen_ != seen; });
      if (stop_) return;
      seen = gen_;
      Job* j = job_;
      lk.unlock();
      work(*j);
      lk.lock();
      if (--busy_ == 0) cv_done_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  std::vector<std::thread> threads_;
  Job* job_ = nullptr;
  uint64_t gen_ = 0;
  unsigned busy_ = 0;
  bool stop_ = false;
};

std::mutex g_launch_mu;  // launches are serialised, like work on a single stream

inline Fiber& current_fiber(const char* what, Site site) {
  Worker* w = tl_worker;
  if (!w || !w->cur)
    throw EmuError(fmt("lora emu: %s at %s called outside a running kernel", what, site_str(site).c_str()));
  return *w->cur;
}

}  // namespace

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------
void set_order_override(Order order, uint64_t seed) {
  std::lock_guard<std::mutex> lk(g_cfg_mu);
  g_order_override = true;
  g_order = order;
  g_seed = seed;
}
void clear_order_override() {
  std::lock_guard<std::mutex> lk(g_cfg_mu);
  g_order_override = false;
}
Order current_order() {
  {
    std::lock_guard<std::mutex> lk(g_cfg_mu);
    if (g_order_override) return g_order;
  }
  const char* e = std::getenv("LORA_EMU_ORDER");
  if (!e || !*e || std::strcmp(e, "forward") == 0) return Order::Forward;
  if (std::strcmp(e, "reversed") == 0) return Order::Reversed;
  if (std::strcmp(e, "shuffled") == 0) return Order::Shuffled;
  throw EmuError(fmt("lora emu: LORA_EMU_ORDER=%s; expected forward, reversed or shuffled", e));
}
uint64_t current_seed() {
  {
    std::lock_guard<std::mutex> lk(g_cfg_mu);
    if (g_order_override) return g_seed;
  }
  const char* e = std::getenv("LORA_EMU_SEED");
  if (!e || !*e) return 1;
  char* end = nullptr;
  unsigned long long v = std::strtoull(e, &end, 0);
  if (!end || *end) throw EmuError(fmt("lora emu: LORA_EMU_SEED=%s is not an integer", e));
  return v;
}
unsigned worker_count() {
  static const unsigned n = [] {
    unsigned hw = std::thread::hardware_concurrency();
    if (hw == 0) hw = 1;
    const char* e = std::getenv("LORA_EMU_THREADS");
    if (e && *e) {
      long v = std::strtol(e, nullptr, 10);
      if (v >= 1 && v <= 1024) return static_cast<unsigned>(v);
    }
    return hw;
  }();
  return n;
}
size_t fiber_stack_bytes() {
  static const size_t n = [] {
#if defined(LORA_EMU_ASAN)
    size_t kb = 1024;
#else
    size_t kb = 256;
#endif
    const char* e = std::getenv("LORA_EMU_STACK_KB");
    if (e && *e) {
      long v = std::strtol(e, nullptr, 10);
      if (v >= 16 && v <= 65536) kb = static_cast<size_t>(v);
    }
    return kb * 1024;
  }();
  return n;
}
const char* context_switch_kind() {
#if defined(LORA_EMU_ASM_SWITCH)
  return "x86-64 asm";
#else
  return "ucontext";
#endif
}

void set_max_dynamic_smem(const void* kernel_id, int bytes) {
  std::lock_guard<std::mutex> lk(g_attr_mu);
  g_max_dyn_smem[kernel_id] = bytes;
}

void launch_raw(const LaunchSpec& spec) {
  const dim3 g = spec.grid, b = spec.block;
  const std::string at = fmt("kernel %s launched at %s", spec.kernel_name, site_str(spec.site).c_str());
  if (tl_worker)
    throw EmuError(fmt("%s: launched from inside a running kernel (dynamic parallelism is not supported)", at.c_str()));
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    throw EmuError(fmt("%s: invalid configuration: grid (%u,%u,%u) block (%u,%u,%u) has a zero dimension", at.c_str(),
                       g.x, g.y, g.z, b.x, b.y, b.z));
  if (b.x > 1024 || b.y > 1024 || b.z > 64 || static_cast<uint64_t>(b.x) * b.y * b.z > kMaxThreads)
    throw EmuError(fmt("%s: invalid configuration: block (%u,%u,%u) exceeds 1024 threads (or x,y > 1024, z > 64)",
                       at.c_str(), b.x, b.y, b.z));
  if (g.x > 0x7FFFFFFFu || g.y > 65535u || g.z > 65535u)
    throw EmuError(fmt("%s: invalid configuration: grid (%u,%u,%u) exceeds (2^31-1, 65535, 65535)", at.c_str(), g.x,
                       g.y, g.z));
  size_t limit = kDefaultDynSmem;
  {
    std::lock_guard<std::mutex> lk(g_attr_mu);
    auto it = g_max_dyn_smem.find(spec.kernel_id);
    if (it != g_max_dyn_smem.end()) limit = static_cast<size_t>(it->second);
  }
  if (spec.smem_bytes > limit)
    throw EmuError(fmt("%s: %zu bytes of dynamic shared memory exceed the kernel's limit of %zu (raise it with "
                       "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes))",
                       at.c_str(), spec.smem_bytes, limit));
  if (spec.smem_bytes > kMaxDynSmem)
    throw EmuError(fmt("%s: %zu bytes of dynamic shared memory exceed the hardware maximum of %zu", at.c_str(),
                       spec.smem_bytes, kMaxDynSmem));

  Job job;
  job.spec = &spec;
  job.total = static_cast<uint64_t>(g.x) * g.y * g.z;
  job.order = current_order();
  job.seed = current_seed();
  {
    std::lock_guard<std::mutex> lk(g_launch_mu);
    Pool::instance().run(job);
  }
  if (job.failed) throw EmuError(job.error);
}

void syncthreads(Site site) { (void)syncthreads_count(site, 0); }

int syncthreads_count(Site site, int pred) {
  Fiber& f = current_fiber("__syncthreads()", site);
  Worker& w = *tl_worker;
  if (w.exited > 0) {
    unsigned gone = 0;
    while (gone < w.n && w.fibers[gone]->st != St::Exited) ++gone;
    throw EmuError(fmt("%s: __syncthreads() at %s can never complete: thread %s has already exited (every thread of "
                       "the block must reach each barrier)",
                       w.where(f).c_str(), site_str(site).c_str(), w.tid_str(gone).c_str()));
  }
  if (w.bar_waiting > 0 && !same_site(w.bar_site, site))
    throw EmuError(fmt("%s: divergent __syncthreads(): this thread is at %s while thread %s (and %u more) wait at %s",
                       w.where(f).c_str(), site_str(site).c_str(), w.tid_str(w.bar_first).c_str(), w.bar_waiting - 1,
                       site_str(w.bar_site).c_str()));
  if (w.bar_waiting == 0) {
    w.bar_site = site;
    w.bar_first = f.linear;
    w.bar_acc = 0;
  }
  w.bar_acc += pred;
  f.st = St::Barrier;
  f.site = site;
  if (++w.bar_waiting == w.n) {
    w.bar_result = w.bar_acc;
    w.bar_waiting = 0;
    for (unsigned i = 0; i < w.n; ++i) w.fibers[i]->st = St::Runnable;
    w.restart = true;
  }
  w.yield(f);
  return w.bar_result;
}

void syncwarp(Site site, unsigned mask) {
  Fiber& f = current_fiber("__syncwarp()", site);
  WarpArgs a;
  a.op = kOpSyncwarp;
  a.mask = mask;
  a.name = "__syncwarp";
  tl_worker->warp_arrive(f, a, site);
}

unsigned long long shfl_raw(Site site, int kind, unsigned mask, unsigned long long value, int arg, int width,
                            const char* name) {
  Fiber& f = current_fiber(name, site);
  WarpArgs a;
  a.op = kind;
  a.mask = mask;
  a.name = name;
  a.value = value;
  a.arg = arg;
  a.width = width;
  tl_worker->warp_arrive(f, a, site);
  return f.w.result;
}

unsigned ballot(Site site, unsigned mask, int pred, const char* name) {
  Fiber& f = current_fiber(name, site);
  WarpArgs a;
  a.op = kOpBallot;
  a.mask = mask;
  a.name = name;
  a.value = pred ? 1u : 0u;
  tl_worker->warp_arrive(f, a, site);
  return static_cast<unsigned>(f.w.result);
}

unsigned activemask() {
  Fiber& f = current_fiber("__activemask()", Site{"?", 0});
  const Worker& w = *tl_worker;
  const unsigned warp = f.linear / 32;
  return w.warp_exists[warp] & ~w.warp_exited[warp];
}

unsigned lane_id() { return current_fiber("lane_id()", Site{"?", 0}).linear % 32; }

unsigned char* dynamic_smem() {
  (void)current_fiber("dynamic shared memory", Site{"?", 0});
  return tl_worker->smem;
}

void trap(Site site) {
  Fiber& f = current_fiber("__trap()", site);
  throw EmuError(fmt("%s: __trap() at %s", tl_worker->where(f).c_str(), site_str(site).c_str()));
}

void warp_mma_m16n8k16_bf16(Site site, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  Fiber& f = current_fiber("mma.m16n8k16", site);
  WarpArgs w;
  w.op = kOpMmaBf16;
  w.mask = 0xFFFFFFFFu;
  w.name = "mma.sync.m16n8k16.bf16";
  std::memcpy(w.a, a, sizeof w.a);
  std::memcpy(w.b, b, sizeof w.b);
  std::memcpy(w.c, c, sizeof w.c);
  tl_worker->warp_arrive(f, w, site);
  std::memcpy(d, f.w.d, sizeof f.w.d);
}

void warp_mma_m16n8k16_f16(Site site, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
  Fiber& f = current_fiber("mma.m16n8k16", site);
  WarpArgs w;
  w.op = kOpMmaF16;
  w.mask = 0xFFFFFFFFu;
  w.name = "mma.sync.m16n8k16.f16";
  std::memcpy(w.a, a, sizeof w.a);
  std::memcpy(w.b, b, sizeof w.b);
  std::memcpy(w.c, c, sizeof w.c);
  tl_worker->warp_arrive(f, w, site);
  std::memcpy(d, f.w.d, sizeof f.w.d);
}

void warp_ldmatrix(Site site, int num, bool trans, const void* row_addr, uint32_t* out) {
  Fiber& f = current_fiber("ldmatrix", site);
  WarpArgs w;
  w.op = kOpLdmatrix;
  w.mask = 0xFFFFFFFFu;
  w.name = trans ? "ldmatrix.trans" : "ldmatrix";
  w.num = num;
  w.trans = trans;
  w.ptr = row_addr;
  // Lanes beyond 8*num supply no address; their pointer is not read.
  tl_worker->warp_arrive(f, w, site);
  for (int i = 0; i < num; ++i) out[i] = f.w.out[i];
}

void cp_async(Site site, void* smem_dst, const void* gmem_src, int bytes, int src_bytes) {
  Fiber& f = current_fiber("cp.async", site);
  const uintptr_t src_bits = src_bytes > 0 ? reinterpret_cast<uintptr_t>(gmem_src) : 0u;
  if ((reinterpret_cast<uintptr_t>(smem_dst) | src_bits) % static_cast<unsigned>(bytes))
    throw EmuError(fmt("%s: cp.async at %s: addresses %p <- %p are not %d-byte aligned", tl_worker->where(f).c_str(),
                       site_str(site).c_str(), smem_dst, gmem_src, bytes));
  if (src_bytes < 0 || src_bytes > bytes)
    throw EmuError(fmt("%s: cp.async at %s: src size %d outside [0, %d]", tl_worker->where(f).c_str(),
                       site_str(site).c_str(), src_bytes, bytes));
  // The copy is deferred until cp_async_wait: reading the destination early shows stale data.
  f.cp_ops.push_back(CpOp{smem_dst, gmem_src, bytes, src_bytes, f.cp_group});
}

void cp_async_commit(Site site) {
  Fiber& f = current_fiber("cp.async.commit_group", site);
  ++f.cp_group;
}

void cp_async_wait(Site site, int keep_pending) {
  Fiber& f = current_fiber("cp.async.wait_group", site);
  if (keep_pending < 0) keep_pending = 0;
  const unsigned keep = static_cast<unsigned>(keep_pending);
  // groups 0 .. cp_group-1 are committed; all but the newest `keep` of them must complete
  const unsigned below = f.cp_group > keep ? f.cp_group - keep : 0u;
  tl_worker->complete_cp_async(f, below);
}

}  // namespace lora::emu

extern "C" void lora_emu_fiber_main(void* arg) {
  using namespace lora::emu;
  Fiber& f = *static_cast<Fiber*>(arg);
  Worker& w = *tl_worker;
  asan_finish_switch(nullptr, &w.sched_bottom, &w.sched_size);
  bool threw = false;
  try {
    w.spec->thunk(w.spec->params);
  } catch (const EmuError& e) {
    threw = true;
    w.record_failure(e.what());
  } catch (const std::exception& e) {
    threw = true;
    w.record_failure(w.where(f) + ": exception from kernel: " + e.what());
  } catch (...) {
    threw = true;
    w.record_failure(w.where(f) + ": unknown exception from kernel");
  }
  if (threw) {
    f.st = St::Exited;
  } else {
    w.on_exit(f);
  }
  asan_start_switch(nullptr, w.sched_bottom, w.sched_size);  // this fiber's fake stack can go
#if defined(LORA_EMU_ASM_SWITCH)
  lora_emu_switch(&f.sp, w.sched_sp);
#else
  swapcontext(&f.uc, &w.sched_uc);
#endif
  __builtin_unreachable();
}

namespace lora::emu::cuda_api {

// ---------------------------------------------------------------------------
// Host runtime API subset
// ---------------------------------------------------------------------------
const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}
const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
// Emulated launches report failures by throwing lora::emu::EmuError, so no error is ever pending.
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (!ptr) return cudaErrorInvalidValue;
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  void* p = nullptr;
  if (posix_memalign(&p, 256, bytes) != 0 || !p) return cudaErrorMemoryAllocation;  // exact size: ASan sees overruns
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes && (!dst || !src)) return cudaErrorInvalidValue;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (bytes && !dst) return cudaErrorInvalidValue;
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) { return cudaMemset(dst, value, bytes); }

}  // namespace lora::emu::cuda_api
