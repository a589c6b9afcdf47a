// The TCP rendezvous of torchrun-style launches (private): libtorch's own c10d::TCPStore at
// MASTER_ADDR:MASTER_PORT, rank 0 serving it. Used to set up gloo and to exchange the NCCL id.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

#include "dptrain/parallel/launch_info.h"

namespace dpt::detail {

// Blocks until every rank has connected, or throws TimeoutError / InvalidArgumentError naming
// MASTER_ADDR and MASTER_PORT.
c10::intrusive_ptr<c10d::Store> connect_tcp_store(const LaunchInfo& launch, std::chrono::milliseconds timeout);

// One more client connection to the store rank 0 serves (after connect_tcp_store), for a thread
// that must not queue behind the first connection's blocking reads.
c10::intrusive_ptr<c10d::Store> connect_tcp_store_client(const LaunchInfo& launch, std::chrono::milliseconds timeout);

}  // namespace dpt::detail
