// The cross-rank call check shared by the backends (private). Each rank contributes its call's
// fields (collective kind, dtype, element count, reduce op, root); one allreduce(MAX) of the
// fields and their negations gives every field's max and min over ranks, so all ranks see the
// same disagreement and throw the same CommunicationError - no rank reduces garbage or hangs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dptrain/parallel/comm/collective.h"

namespace dpt::detail {

using dpt::CollectiveKind;

// Whether communicators created now run the check: under DPTRAIN_DEBUG=DETAIL (as PyTorch runs its
// collective fingerprinting only under TORCH_DISTRIBUTED_DEBUG=DETAIL: it costs a collective and,
// on NCCL, a host round trip per call). DPTRAIN_CHECK_COLLECTIVES=1 or 0 forces it on or off.
bool call_check_enabled();

// {kind, dtype, numel, op, root}; -1 marks a field the collective does not use.
std::vector<int64_t> make_fingerprint(CollectiveKind kind, int64_t dtype = -1, int64_t numel = -1, int64_t op = -1,
                                      int64_t root = -1);
// [v..., -v...]: what to allreduce with MAX.
std::vector<int64_t> fingerprint_payload(const std::vector<int64_t>& fingerprint);
// Throws CommunicationError naming the first field the ranks disagree on.
void check_fingerprint(const std::vector<int64_t>& reduced_payload, const std::string& who,
                       const std::string& description);

}  // namespace dpt::detail
