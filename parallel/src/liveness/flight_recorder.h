// The last collectives of one communicator, kept so that a hang can be explained (private).
//
// A fixed ring of the last N collectives (DPTRAIN_FLIGHT_RECORDER=N, default 64; 0 turns it off):
// for each its place in issue order, description ("allreduce(sum) #1813 of 6.4 MB float32"),
// state (queued -> running -> completed / failed) and the times of each change. Entries are
// written under one mutex the progress thread takes anyway, a few hundred nanoseconds per
// collective. On a timeout the communicator dumps it into the log (and into
// $DPTRAIN_FLIGHT_RECORDER_DIR/flight-recorder-rank<R>.txt when set), and compares its position
// with the other ranks' (mpi/mpi_watchdog.h) to name the rank behind the hang.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace dpt::detail {

// Where a rank is in the sequence of collectives every rank issues in the same order.
struct FlightPosition {
  int64_t completed = 0;      // issue index of the last completed collective (0: none yet)
  int64_t in_flight = 0;      // issue index of the oldest unfinished one (0: none)
  std::string completed_what, in_flight_what;
  double idle_s = 0.0;        // nothing in flight: seconds since the last completion (or start)
  double waiting_s = 0.0;     // something in flight: seconds since it was issued

  std::string encode() const;  // one line, for the wire
  static FlightPosition decode(const std::string& text);
  // "waiting in allreduce(sum) #2 ... for 3.0 s" / "at ... (completed), not in a collective for 3.1 s"
  std::string describe() const;
};

class FlightRecorder {
 public:
  // `capacity` 0: off (record() returns 0 and the rest does nothing).
  explicit FlightRecorder(size_t capacity);
  ~FlightRecorder();
  FlightRecorder(const FlightRecorder&) = delete;
  FlightRecorder& operator=(const FlightRecorder&) = delete;
  // The name its lines carry in a crash dump ("mpi rank 1/4"); set before the first collective.
  void set_owner(const std::string& owner) { owner_ = owner; }

  // On SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT, write every live recorder's ring to stderr,
  // then let the signal do what it did before. Only write(2) inside the handler; a recorder whose
  // lock is held at that moment is skipped. Idempotent; the Runtime installs it in multi-rank jobs.
  static void install_crash_dump();
  static size_t capacity_from_env();  // DPTRAIN_FLIGHT_RECORDER, default 64

  // Returns the collective's issue index (1, 2, ...), or 0 when off.
  int64_t queued(const std::string& description);
  void started(int64_t index);
  void finished(int64_t index, bool ok);

  bool enabled() const { return capacity_ > 0; }
  FlightPosition position() const;
  // The ring, oldest first, one line per collective, each line prefixed with the owner's name.
  std::string dump() const;

 private:
  enum class State { Queued, Running, Completed, Failed };
  struct Entry {
    int64_t index = 0;
    std::string description;
    State state = State::Queued;
    std::chrono::steady_clock::time_point queued_at, started_at, finished_at;
  };
  Entry* find(int64_t index);  // under mutex_; nullptr once overwritten
  // Under mutex_: where collective `index` is (or was) kept, and the oldest index still kept.
  Entry& slot(int64_t index) { return ring_[static_cast<size_t>(index - 1) % capacity_]; }
  const Entry& slot(int64_t index) const { return ring_[static_cast<size_t>(index - 1) % capacity_]; }
  int64_t oldest_kept() const { return std::max<int64_t>(1, issued_ - static_cast<int64_t>(capacity_) + 1); }
  static const char* state_name(State state);

  friend void write_ring_from_signal(FlightRecorder& recorder, int fd);
  const size_t capacity_;
  std::string owner_ = "communicator";
  mutable std::mutex mutex_;
  std::vector<Entry> ring_;
  int64_t issued_ = 0;
  int64_t last_completed_ = 0;
  std::string last_completed_what_;
  std::chrono::steady_clock::time_point last_completed_at_ = std::chrono::steady_clock::now();
};

// What each rank's position says about a hang seen by rank `me` (positions by rank; a missing
// one: that rank did not answer). One line, the ranks behind first, e.g. "rank 1: at
// allreduce(sum) #1 ... (completed), not in a collective for 3.1 s; ranks 0, 2: waiting in
// allreduce(sum) #2 ... for 3.0 s".
std::string explain_hang(int me, const std::vector<std::pair<bool, FlightPosition>>& positions);

}  // namespace dpt::detail
