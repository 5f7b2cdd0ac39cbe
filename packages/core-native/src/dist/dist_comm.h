// The addon's side of distributed training: finds and loads the MPI plug-in (comm_api.h) and keeps
// the process's one communicator. Nothing here includes mpi.h.
#pragma once
#include <string>

#include "comm_api.h"

namespace lora::dist {

struct Info {
  bool built = false;        // the plug-in was built (CMake found MPI)
  bool usable = false;       // the plug-in and libmpi load here
  std::string reason;        // why not, when not usable
  std::string plugin_path;
  std::string library;       // MPI_Get_library_version's first line, once initialised
  bool nccl_built = false;   // the plug-in was built with NCCL
  std::string nccl_reason;
  // Rank and size as the launcher's environment says (OMPI_COMM_WORLD_*, PMI_*); -1/0 when not launched by one.
  int env_rank = -1;
  int env_size = 0;
};

Info info();
// The loaded plug-in, or null with `why` filled in.
const LoraCommApi* api(std::string* why);

}  // namespace lora::dist
