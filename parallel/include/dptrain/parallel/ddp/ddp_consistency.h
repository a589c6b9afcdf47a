// Cross-rank agreement checks of DistributedDataParallel; each reports the first difference on
// every rank (the same error everywhere) instead of letting mismatched collectives hang.
#pragma once

#include <string>
#include <vector>

#include "dptrain/parallel/comm/communicator.h"

namespace dpt {

// Every rank passes its list of lines (e.g. "fc.weight float32 [10, 20]"). Cheap when they agree
// (one allgather of a 64-bit hash); otherwise the lists are exchanged and `what` plus the first
// differing line, with the ranks that hold each version, is thrown as ModelError on every rank.
void check_same_on_all_ranks(Communicator& comm, const std::vector<std::string>& lines, const std::string& what);

// DETAIL debug mode: all ranks are about to issue the collective described by `description`
// ("allreduce bucket 2 float32[1024]"); throws CommunicationError naming the ranks that differ.
void check_next_collective(Communicator& comm, const std::string& description);

}  // namespace dpt
