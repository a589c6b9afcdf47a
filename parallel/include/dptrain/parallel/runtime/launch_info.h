// Who launched this process, and where it sits in the job.
//
// dptrain runs under any of the usual launchers and reads what each one exports:
//   launcher  | rank / world size                          | local rank
//   "mpi"     | OMPI_COMM_WORLD_RANK / _SIZE (OpenMPI),    | OMPI_COMM_WORLD_LOCAL_RANK / _LOCAL_SIZE,
//             | PMI_RANK / PMI_SIZE (MPICH, Intel MPI)     | MPI_LOCALRANKID / MPI_LOCALNRANKS
//   "slurm"   | SLURM_PROCID / SLURM_NTASKS                | SLURM_LOCALID / SLURM_NTASKS_PER_NODE
//   "torchrun"| RANK / WORLD_SIZE                          | LOCAL_RANK / LOCAL_WORLD_SIZE
//   "none"    | 0 / 1 (a plain single process)             | 0 / 1
// MASTER_ADDR / MASTER_PORT (the TCP rendezvous of torchrun-style launches) are read for every
// launcher. When several sets are present, MPI wins over SLURM (srun --mpi=pmix exports both),
// and SLURM over torchrun-style variables.
//
// Example: `RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 prog`
//   -> {launcher "torchrun", rank 1, world_size 2, local_rank 1, local_world_size 2,
//       master_addr "127.0.0.1", master_port 29500}
#pragma once

#include <string>

namespace dpt {

struct LaunchInfo {
  std::string launcher = "none";  // "mpi", "slurm", "torchrun" or "none"
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // rank among the processes of this node; selects the CUDA device
  int local_world_size = 1;  // processes on this node
  std::string master_addr;   // empty when not set
  int master_port = 0;       // 0 when not set
};

// Reads the environment (never MPI). Throws InvalidArgumentError on inconsistent values
// ("RANK=4 is not below WORLD_SIZE=4", "WORLD_SIZE='x' is not an integer").
LaunchInfo detect_launch();

}  // namespace dpt
