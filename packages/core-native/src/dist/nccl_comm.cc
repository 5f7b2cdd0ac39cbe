// NCCL for GPU ranks, part of the MPI plug-in (built only when CMake finds nccl.h and libnccl next
// to a CUDA toolkit; neither is in Debian, so on the project's CPU machines this file is not
// compiled — see the "lora: MPI ..." CMake line). As llm.c does it: rank 0 makes an ncclUniqueId,
// MPI broadcasts it, every rank joins one communicator for the process; all-reduces of device
// buffers run on the addon's training stream (the caller passes it), in place.
//
// Bounded failure: NCCL calls are made non-blocking (ncclConfig_t.blocking = 0); the wait polls
// cudaStreamQuery and ncclCommGetAsyncError, and past the deadline ncclCommAbort releases the GPU
// work so the caller can abort the MPI job.
#include <cuda_runtime.h>
#define OMPI_SKIP_MPICXX 1  // the C API only (no libmpi_cxx)
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "comm_api.h"

namespace {

ncclComm_t g_comm = nullptr;

int fail(char* err, size_t len, const char* what, const char* detail) {
  std::snprintf(err, len, "%s: %s", what, detail);
  return LORA_COMM_ERROR;
}

// Waits for the communicator's pending work (and, with a stream, for the stream) until the deadline.
int wait_nccl(cudaStream_t stream, double timeout_s, const char* what, char* err, size_t len) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(g_comm, &async);
    if (async != ncclSuccess && async != ncclInProgress) return fail(err, len, what, ncclGetErrorString(async));
    if (async == ncclSuccess) {
      const cudaError_t q = stream ? cudaStreamQuery(stream) : cudaSuccess;
      if (q == cudaSuccess) return LORA_COMM_OK;
      if (q != cudaErrorNotReady) return fail(err, len, what, cudaGetErrorString(q));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(g_comm);
      g_comm = nullptr;
      std::snprintf(err, len, "%s did not complete within %.0f s: a rank is gone, stuck or far behind", what, timeout_s);
      return LORA_COMM_TIMEOUT;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace

int lora_nccl_init(int device, char* err, size_t len) {
  if (g_comm) return LORA_COMM_OK;
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ncclUniqueId id;
  if (rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) return fail(err, len, "ncclGetUniqueId", ncclGetErrorString(r));
  }
  if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return fail(err, len, "MPI_Bcast of the NCCL id", "failed");
  const cudaError_t c = cudaSetDevice(device);
  if (c != cudaSuccess) return fail(err, len, "cudaSetDevice", cudaGetErrorString(c));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t r = ncclCommInitRankConfig(&g_comm, size, id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) return fail(err, len, "ncclCommInitRankConfig", ncclGetErrorString(r));
  return wait_nccl(nullptr, 600, "ncclCommInitRankConfig", err, len);
}

int lora_nccl_allreduce_sum_f32(float* buf, int64_t n, void* stream, double timeout_s, char* err, size_t len) {
  if (!g_comm) return fail(err, len, "ncclAllReduce", "NCCL is not initialised (or an earlier call timed out)");
  const auto s = static_cast<cudaStream_t>(stream);
  const ncclResult_t r = ncclAllReduce(buf, buf, static_cast<size_t>(n), ncclFloat32, ncclSum, g_comm, s);
  if (r != ncclSuccess && r != ncclInProgress) return fail(err, len, "ncclAllReduce", ncclGetErrorString(r));
  return wait_nccl(s, timeout_s, "ncclAllReduce", err, len);
}
