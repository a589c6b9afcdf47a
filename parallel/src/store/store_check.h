// The store backend's error check (private; mpi_check.h and nccl_check.h are its twins): what
// c10d's TCPStore throws when a peer died or a read timed out becomes dptrain's own TimeoutError /
// CommunicationError, one line naming the rank and the collective (c10d's messages carry a C++
// backtrace after the first line).
#pragma once

#include <chrono>
#include <exception>
#include <string>

namespace dpt::detail {

// Throws the error for `failure` (what c10d threw, never a dpt::Error), caught while `who` ran
// `description` with `timeout` as the limit.
[[noreturn]] void rethrow_store_failure(const std::exception& failure, const std::string& who,
                                        const std::string& description, std::chrono::milliseconds timeout);

}  // namespace dpt::detail
