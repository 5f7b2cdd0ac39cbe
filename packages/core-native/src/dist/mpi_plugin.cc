// The MPI plug-in (lora_mpi.so): the only code that includes mpi.h. Loaded by the addon at run time
// (dist_comm.cc); see comm_api.h for why it is a plug-in and how timeouts work.
//
// Thread use: MPI is initialised with MPI_THREAD_SERIALIZED and every later call comes from a
// libuv worker thread, one call at a time (the addon holds a mutex around each).
#define OMPI_SKIP_MPICXX 1  // the C API only (no libmpi_cxx)
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "comm_api.h"

namespace {

bool g_broken = false;
// Collectives move at most this much per call: one 144 MiB MPI_Ireduce over Open MPI 4.1's TCP
// transport crashed rank 0 (SIGSEGV in ob1) here; 16 MiB pieces go through, and MPI counts are ints.
constexpr int64_t kChunkBytes = int64_t{16} << 20;  // a collective timed out: MPI cannot cancel it, so nothing else may run

void say(char* err, size_t len, const char* fmt, const char* a = "", double b = 0) {
  if (err && len) std::snprintf(err, len, fmt, a, b);
}

const char* mpi_error_text(int code) {
  static thread_local char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) std::snprintf(text, sizeof text, "MPI error %d", code);
  return text;
}

// Polls the request until it completes or the deadline passes. Open MPI moves a large message
// (pipelined in segments) only while MPI_Test runs, so a transfer must be polled back to back:
// sleeping 1 ms between polls made a 4.5 MiB sum take 2.3 s. Waiting for a slower rank, on the
// other hand, must not spin on the CPU that rank needs. So every collective first waits in a
// barrier with sleeps (20 us growing to 1 ms), and only then moves data with tight polling
// (`spin`), which then lasts only as long as the transfer.
int wait_until(MPI_Request* req, double timeout_s, const char* what, bool spin, char* err, size_t len) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
  auto pause = std::chrono::microseconds(20);
  for (int polls = 0;; ++polls) {
    int done = 0;
    const int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      if (err) std::snprintf(err, len, "%s failed: %s", what, mpi_error_text(rc));
      return LORA_COMM_ERROR;
    }
    if (done) return LORA_COMM_OK;
    if ((!spin || polls % 1024 == 0) && clock::now() > deadline) {
      g_broken = true;
      say(err, len, "%s did not complete within %.0f s: a rank is gone, stuck or far behind", what, timeout_s);
      return LORA_COMM_TIMEOUT;
    }
    if (spin) {
      std::this_thread::yield();
    } else if (polls > 200) {
      std::this_thread::sleep_for(pause);
      if (pause < std::chrono::milliseconds(1)) pause *= 2;
    }
  }
}

// Every rank has arrived (see wait_until); waits with sleeps.
int arrive(double timeout_s, const char* what, char* err, size_t len) {
  MPI_Request req;
  const int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) {
    if (err) std::snprintf(err, len, "MPI_Ibarrier failed to start: %s", mpi_error_text(rc));
    return LORA_COMM_ERROR;
  }
  return wait_until(&req, timeout_s, what, false, err, len);
}

int refuse_if_broken(char* err, size_t len) {
  if (!g_broken) return LORA_COMM_OK;
  say(err, len, "the communicator is broken: an earlier collective timed out%s", "");
  return LORA_COMM_ERROR;
}

int start_failed(int rc, const char* what, char* err, size_t len) {
  if (err) std::snprintf(err, len, "%s failed to start: %s", what, mpi_error_text(rc));
  return LORA_COMM_ERROR;
}

int init(int* rank, int* size, char* err, size_t len) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return start_failed(rc, "MPI_Init_thread", err, len);
    if (provided < MPI_THREAD_SERIALIZED) {
      say(err, len, "MPI provides thread level %s, the addon needs MPI_THREAD_SERIALIZED (calls come from worker threads)",
          provided == MPI_THREAD_SINGLE ? "SINGLE" : "FUNNELED");
      return LORA_COMM_ERROR;
    }
    // Errors come back as return codes (the default handler would abort the job from inside a call).
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, size);
  return LORA_COMM_OK;
}

// Sum into rank 0, then broadcast rank 0's bits: the same result on every rank, in chunks that fit
// MPI's int counts.
template <typename T>
int sum(T* buf, int64_t n, MPI_Datatype type, double timeout_s, char* err, size_t len) {
  if (int rc = refuse_if_broken(err, len)) return rc;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (int rc = arrive(timeout_s, "allreduce (waiting for every rank)", err, len)) return rc;
  const int64_t chunk = kChunkBytes / static_cast<int64_t>(sizeof(T));
  for (int64_t off = 0; off < n; off += chunk) {
    const int count = static_cast<int>(n - off < chunk ? n - off : chunk);
    T* p = buf + off;
    MPI_Request req;
    int rc = MPI_Ireduce(rank == 0 ? MPI_IN_PLACE : p, p, count, type, MPI_SUM, 0, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return start_failed(rc, "MPI_Ireduce", err, len);
    if ((rc = wait_until(&req, timeout_s, "allreduce (reduce to rank 0)", true, err, len))) return rc;
    rc = MPI_Ibcast(p, count, type, 0, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return start_failed(rc, "MPI_Ibcast", err, len);
    if ((rc = wait_until(&req, timeout_s, "allreduce (broadcast from rank 0)", true, err, len))) return rc;
  }
  return LORA_COMM_OK;
}

int sum_f32(float* buf, int64_t n, double timeout_s, char* err, size_t len) { return sum(buf, n, MPI_FLOAT, timeout_s, err, len); }
int sum_f64(double* buf, int64_t n, double timeout_s, char* err, size_t len) { return sum(buf, n, MPI_DOUBLE, timeout_s, err, len); }

int broadcast(void* buf, int64_t bytes, int root, double timeout_s, char* err, size_t len) {
  if (int rc = refuse_if_broken(err, len)) return rc;
  if (int rc = arrive(timeout_s, "broadcast (waiting for every rank)", err, len)) return rc;
  auto* p = static_cast<char*>(buf);
  for (int64_t off = 0; off < bytes; off += kChunkBytes) {
    const int count = static_cast<int>(bytes - off < kChunkBytes ? bytes - off : kChunkBytes);
    MPI_Request req;
    const int rc = MPI_Ibcast(p + off, count, MPI_BYTE, root, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return start_failed(rc, "MPI_Ibcast", err, len);
    if (int w = wait_until(&req, timeout_s, "broadcast", true, err, len)) return w;
  }
  return LORA_COMM_OK;
}

int barrier(double timeout_s, char* err, size_t len) {
  if (int rc = refuse_if_broken(err, len)) return rc;
  return arrive(timeout_s, "barrier", err, len);
}

void abort_job(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

int finalize() {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  // After a timed-out collective MPI_Finalize would wait for it forever: leave it to the abort.
  if (!inited || finalized || g_broken) return LORA_COMM_OK;
  return MPI_Finalize() == MPI_SUCCESS ? LORA_COMM_OK : LORA_COMM_ERROR;
}

const char* library_version() {
  static char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int n = 0;
  MPI_Get_library_version(text, &n);
  for (int i = 0; i < n; ++i) if (text[i] == '\n' || text[i] == ',') { text[i] = 0; break; }
  return text;
}

}  // namespace

#ifdef LORA_HAS_NCCL
int lora_nccl_init(int device, char* err, size_t len);
int lora_nccl_allreduce_sum_f32(float* buf, int64_t n, void* stream, double timeout_s, char* err, size_t len);
#endif

extern "C" __attribute__((visibility("default"))) const LoraCommApi* lora_comm_api(void) {
  static const LoraCommApi api = {
      LORA_COMM_ABI, init, sum_f32, sum_f64, broadcast, barrier, abort_job, finalize, library_version,
#ifdef LORA_HAS_NCCL
      lora_nccl_init, lora_nccl_allreduce_sum_f32,
#else
      nullptr, nullptr,
#endif
  };
  return &api;
}
