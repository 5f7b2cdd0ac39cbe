// The C ABI between the addon and its MPI plug-in (lora_mpi.so, built from mpi_plugin.cc when CMake
// finds MPI). The addon never links libmpi: it dlopen()s the plug-in on the first distInit(), so an
// addon built with MPI still loads and runs single-process on a machine without Open MPI, and
// `lora env` can say why MPI is not usable instead of failing to load.
//
// Every blocking call takes a timeout: the plug-in starts the non-blocking collective
// (MPI_Ireduce/MPI_Ibcast/MPI_Ibarrier) and polls MPI_Test until it completes or the deadline
// passes. A timed-out call leaves the communicator broken (MPI cannot cancel a collective); the
// caller then aborts the job.
#pragma once
#include <stddef.h>
#include <stdint.h>

extern "C" {

enum LoraCommStatus { LORA_COMM_OK = 0, LORA_COMM_ERROR = 1, LORA_COMM_TIMEOUT = 2 };

struct LoraCommApi {
  int abi_version;  // LORA_COMM_ABI
  // MPI_Init_thread(SERIALIZED). rank/size of MPI_COMM_WORLD; the library's version string.
  int (*init)(int* rank, int* size, char* err, size_t err_len);
  // In-place sums over all ranks. Every rank ends with the same bits: the sum is reduced to rank 0
  // and broadcast from there (an allreduce's algorithm may add in a different order per rank).
  int (*allreduce_sum_f32)(float* buf, int64_t n, double timeout_s, char* err, size_t err_len);
  int (*allreduce_sum_f64)(double* buf, int64_t n, double timeout_s, char* err, size_t err_len);
  int (*broadcast)(void* buf, int64_t bytes, int root, double timeout_s, char* err, size_t err_len);
  int (*barrier)(double timeout_s, char* err, size_t err_len);
  // MPI_Abort(MPI_COMM_WORLD, code): mpirun ends every rank of the job. Does not return.
  void (*abort)(int code);
  int (*finalize)(void);
  const char* (*library_version)(void);
  // NCCL (only when the plug-in was built with it; else null): one communicator per process from an
  // id that rank 0 makes and broadcasts over MPI; in-place f32 sum of device memory on `stream`.
  int (*nccl_init)(int device, char* err, size_t err_len);
  int (*nccl_allreduce_sum_f32)(float* device_buf, int64_t n, void* stream, double timeout_s, char* err, size_t err_len);
};

#define LORA_COMM_ABI 1
typedef const LoraCommApi* (*LoraCommApiFn)(void);
}
