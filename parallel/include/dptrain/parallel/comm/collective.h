// One collective call as a backend receives it: already checked, numbered and described by
// Communicator (comm/communicator.h), so every backend reports the same call in the same words.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dpt {

enum class CollectiveKind : int64_t { Allreduce = 1, Broadcast, Allgather, ReduceScatter, Barrier, Coalesced, Split };

struct Collective {
  CollectiveKind kind = CollectiveKind::Barrier;
  // 1, 2, ... per communicator, in issue order: every rank gives the same call the same number.
  uint64_t sequence = 0;
  // "allreduce(sum) #12 of 4096 x float32 on cpu": in every message and in the flight recorder.
  std::string description;
  // What every rank must agree on: {kind, dtype, element count, reduce op, root}, -1 where unused.
  std::vector<int64_t> fingerprint;
  // Exchange the fingerprint with the other ranks before running (Communicator::checks_calls()).
  bool check_across_ranks = false;
};

}  // namespace dpt
