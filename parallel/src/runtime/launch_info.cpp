#include "dptrain/parallel/runtime/launch_info.h"

#include <algorithm>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"

namespace dpt {
namespace {

bool has(const char* name) { return env::get(name).has_value(); }

int read_int(const char* name, int fallback) {
  auto value = env::get_int(name);
  return value ? static_cast<int>(*value) : fallback;
}

// The variables an MPI launcher sets for each process: OpenMPI's, and MPICH / Intel MPI's (PMI).
struct MpiLauncherVariables {
  const char* rank;
  const char* size;
  const char* local_rank;
  const char* local_size;
};
constexpr MpiLauncherVariables kMpiLaunchers[] = {
    {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
};

bool read_mpi_launch(LaunchInfo& info) {
  for (const auto& names : kMpiLaunchers) {
    if (!has(names.rank) || !has(names.size)) continue;
    info.launcher = "mpi";
    info.rank = read_int(names.rank, 0);
    info.world_size = read_int(names.size, 1);
    info.local_rank = read_int(names.local_rank, 0);
    info.local_world_size = read_int(names.local_size, 1);
    return true;
  }
  return false;
}

bool read_slurm_launch(LaunchInfo& info) {
  if (!has("SLURM_PROCID") || !has("SLURM_NTASKS")) return false;
  info.launcher = "slurm";
  info.rank = read_int("SLURM_PROCID", 0);
  info.world_size = read_int("SLURM_NTASKS", 1);
  info.local_rank = read_int("SLURM_LOCALID", 0);
  // SLURM_NTASKS_PER_NODE may read "2(x3)"; the local size only bounds the local rank here.
  auto per_node = env::get("SLURM_NTASKS_PER_NODE");
  info.local_world_size = info.local_rank + 1;
  if (per_node) {
    try {
      info.local_world_size = std::max(info.local_world_size, std::stoi(*per_node));
    } catch (const std::exception&) {
    }
  }
  return true;
}

bool read_torchrun_launch(LaunchInfo& info) {
  if (!has("RANK") || !has("WORLD_SIZE")) return false;
  info.launcher = "torchrun";
  info.rank = read_int("RANK", 0);
  info.world_size = read_int("WORLD_SIZE", 1);
  info.local_rank = read_int("LOCAL_RANK", 0);
  info.local_world_size = read_int("LOCAL_WORLD_SIZE", has("LOCAL_RANK") ? info.local_rank + 1 : 1);
  if (!has("LOCAL_WORLD_SIZE") && !has("LOCAL_RANK")) {
    info.local_rank = info.rank;  // one node, as torchrun --standalone
    info.local_world_size = info.world_size;
  }
  return true;
}

}  // namespace

LaunchInfo detect_launch() {
  LaunchInfo info;
  // The first launcher whose variables are set; none: a process alone (rank 0 of 1).
  if (!read_mpi_launch(info) && !read_slurm_launch(info)) read_torchrun_launch(info);
  info.master_addr = env::get_or("MASTER_ADDR", "");
  info.master_port = read_int("MASTER_PORT", 0);

  DPT_CHECK(info.world_size >= 1, InvalidArgumentError, "launcher '", info.launcher,
            "': world size must be >= 1, got ", info.world_size);
  DPT_CHECK(info.rank >= 0 && info.rank < info.world_size, InvalidArgumentError, "launcher '",
            info.launcher, "': rank ", info.rank, " is not in [0, ", info.world_size, ")");
  DPT_CHECK(info.local_rank >= 0, InvalidArgumentError, "launcher '", info.launcher,
            "': local rank must be >= 0, got ", info.local_rank);
  if (info.local_world_size <= info.local_rank) info.local_world_size = info.local_rank + 1;
  DPT_CHECK(info.master_port >= 0 && info.master_port < 65536, InvalidArgumentError,
            "MASTER_PORT=", info.master_port, " is not a TCP port (0..65535)");
  return info;
}

}  // namespace dpt
