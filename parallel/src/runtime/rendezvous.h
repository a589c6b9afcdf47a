// Rendezvous, in one place (private): how ranks that share nothing yet find each other. The TCP
// store of torchrun-style launches is libtorch's own c10d::TCPStore at MASTER_ADDR:MASTER_PORT,
// rank 0 serving it (the store backend's transport); share_from_rank0 hands out what rank 0 made
// (the NCCL id) over MPI when it is up, else over that store.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "dptrain/parallel/runtime/launch_info.h"

namespace dpt::detail {

// Blocks until every rank has connected, or throws TimeoutError / InvalidArgumentError naming
// MASTER_ADDR and MASTER_PORT.
c10::intrusive_ptr<c10d::Store> connect_tcp_store(const LaunchInfo& launch, std::chrono::milliseconds timeout);

// One more client connection to the store rank 0 serves (after connect_tcp_store), for a thread
// that must not queue behind the first connection's blocking reads.
c10::intrusive_ptr<c10d::Store> connect_tcp_store_client(const LaunchInfo& launch, std::chrono::milliseconds timeout);

// Rank 0's `bytes` on every rank (the others' `bytes` are replaced; all must pass the same size):
// MPI_Bcast over the world when MPI is up, else through the TCP store under `key`. Returns the
// store when one was used: keep it until every rank has read (rank 0 serves it). `who` names this
// rank in errors.
c10::intrusive_ptr<c10d::Store> share_from_rank0(const LaunchInfo& launch, std::vector<uint8_t>& bytes,
                                                 const std::string& key, std::chrono::milliseconds timeout,
                                                 const std::string& who);

}  // namespace dpt::detail
