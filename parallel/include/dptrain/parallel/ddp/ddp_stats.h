// What DistributedDataParallel measures, and the small interfaces through which it reports it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace dpt {

// DPTRAIN_DEBUG=OFF|INFO|DETAIL (or DdpOptions::debug).
//  INFO: logs the bucket layout (at construction and after the rebuild) and each iteration's
//        timings.
//  DETAIL: INFO, plus before every collective DDP issues, all ranks check that they are about to
//        run the same op on the same shapes and dtypes; a mismatch is a CommunicationError naming
//        both sides, on every rank, instead of a hang or a silent wrong sum. Costs one small
//        allgather per collective (and removes the overlap of communication with backward).
enum class DebugLevel { Off = 0, Info = 1, Detail = 2 };
DebugLevel parse_debug_level(const std::string& text);  // "off", "info", "detail" (any case)
DebugLevel debug_level_from_env();                       // DPTRAIN_DEBUG, default Off

// Host-side timings of one synchronized training iteration (seconds).
//  forward_s: DDP::forward (including the buffer broadcast and join bookkeeping).
//  backward_s: from the end of forward to the end of the backward computation (includes the loss
//    and anything the caller ran in between).
//  exposed_comm_s: time the end-of-backward callback waited for bucket reductions - the part of
//    communication that backward did not hide. On CUDA the wait enqueues stream dependencies and
//    does not block the host, so this is a host-side lower bound there.
struct IterationStats {
  int64_t iteration = 0;  // synchronized backward passes so far (1-based)
  double forward_s = 0;
  double backward_s = 0;
  double exposed_comm_s = 0;
  size_t num_buckets = 0;
  size_t bytes_reduced = 0;  // gradient bytes per rank in the buckets
};

// One timed span, for a Chrome trace ("X" events): name, category, start and duration in
// microseconds of a steady clock (same clock for all events of a process).
struct TraceEvent {
  std::string name;      // "forward", "backward", "allreduce bucket 0", "wait for buckets"
  std::string category;  // "ddp"
  double start_us = 0;
  double duration_us = 0;
};
using TraceRecorder = std::function<void(const TraceEvent&)>;

// Microseconds on std::chrono::steady_clock, the clock of TraceEvent.
double trace_clock_us();

}  // namespace dpt
