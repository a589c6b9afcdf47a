#include "comm/fingerprint.h"

#include <c10/core/ScalarType.h>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/parallel/ddp/ddp_stats.h"
#include "dptrain/parallel/comm/reduce_op.h"

namespace dpt::detail {
namespace {

const char* kind_name(int64_t kind) {
  switch (static_cast<CollectiveKind>(kind)) {
    case CollectiveKind::Allreduce: return "allreduce";
    case CollectiveKind::Broadcast: return "broadcast";
    case CollectiveKind::Allgather: return "allgather";
    case CollectiveKind::ReduceScatter: return "reduce_scatter";
    case CollectiveKind::Barrier: return "barrier";
    case CollectiveKind::Coalesced: return "allreduce_coalesced";
    case CollectiveKind::Split: return "split";
  }
  return "?";
}

const char* dtype_name(int64_t dtype) {
  return dtype < 0 ? "none" : c10::toString(static_cast<c10::ScalarType>(dtype));
}

}  // namespace

bool call_check_enabled() {
  if (env::get("DPTRAIN_CHECK_COLLECTIVES")) return env::get_flag("DPTRAIN_CHECK_COLLECTIVES", false);
  return debug_level_from_env() >= DebugLevel::Detail;
}

std::vector<int64_t> make_fingerprint(CollectiveKind kind, int64_t dtype, int64_t numel, int64_t op, int64_t root) {
  return {static_cast<int64_t>(kind), dtype, numel, op, root};
}

std::vector<int64_t> fingerprint_payload(const std::vector<int64_t>& fingerprint) {
  std::vector<int64_t> payload(fingerprint);
  for (int64_t v : fingerprint) payload.push_back(-v);
  return payload;
}

void check_fingerprint(const std::vector<int64_t>& reduced, const std::string& who, const std::string& description) {
  static const char* const kFieldNames[] = {"collective", "dtype", "element count", "reduce op", "root"};
  const size_t n = reduced.size() / 2;
  for (size_t i = 0; i < n; ++i) {
    const int64_t high = reduced[i], low = -reduced[n + i];
    if (high == low) continue;
    std::string range;
    if (i == 0) {
      range = concat(kind_name(low), " vs ", kind_name(high));
    } else if (i == 1) {
      range = concat(dtype_name(low), " vs ", dtype_name(high));
    } else if (i == 3 && low >= 0) {
      range = concat(to_string(static_cast<ReduceOp>(low)), " vs ", to_string(static_cast<ReduceOp>(high)));
    } else {
      range = concat(low, " .. ", high);
    }
    DPT_THROW(CommunicationError, who, ": ", description, ": ranks disagree on the ", kFieldNames[i < 5 ? i : 4],
              " (", range, "); every rank must issue the same collectives in the same order with the same dtype "
              "and element count");
  }
}

}  // namespace dpt::detail
