#include "liveness/flight_recorder.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>

#include "dptrain/core/env.h"

namespace dpt::detail {
namespace {

double seconds_since(std::chrono::steady_clock::time_point then) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - then).count();
}

std::string seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f s", s);
  return text;
}

std::string ranks_text(const std::vector<int>& ranks) {
  std::ostringstream out;
  out << (ranks.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < ranks.size(); ++i) out << (i ? ", " : "") << ranks[i];
  return out.str();
}

}  // namespace

std::string FlightPosition::encode() const {
  // Tabs separate the fields; descriptions never hold one.
  std::ostringstream out;
  out << completed << '\t' << in_flight << '\t' << idle_s << '\t' << waiting_s << '\t' << completed_what << '\t'
      << in_flight_what;
  return out.str();
}

FlightPosition FlightPosition::decode(const std::string& text) {
  FlightPosition p;
  std::istringstream in(text);
  std::string field;
  std::vector<std::string> fields;
  while (std::getline(in, field, '\t')) fields.push_back(field);
  fields.resize(6);
  try {
    p.completed = std::stoll(fields[0]);
    p.in_flight = std::stoll(fields[1]);
    p.idle_s = std::stod(fields[2]);
    p.waiting_s = std::stod(fields[3]);
  } catch (const std::exception&) {
    // An unreadable answer reads as "nothing known".
  }
  p.completed_what = fields[4];
  p.in_flight_what = fields[5];
  return p;
}

std::string FlightPosition::describe() const {
  if (in_flight > 0) return "waiting in " + in_flight_what + " for " + seconds(waiting_s);
  if (completed == 0) return "no collective run yet (" + seconds(idle_s) + " since start)";
  return "at " + completed_what + " (completed), not in a collective for " + seconds(idle_s);
}

// Note [Crash dump]
// Live recorders sit in a fixed table of atomic slots, so the signal handler can walk them without
// a lock or an allocation. It try_locks each recorder (a thread that crashed while holding it
// leaves it out) and writes its lines with write(2) only.
void write_ring_from_signal(FlightRecorder& recorder, int fd);

namespace {

constexpr size_t kSlots = 64;
std::atomic<FlightRecorder*> g_recorders[kSlots];
struct sigaction g_previous[NSIG];
std::atomic<bool> g_crash_dump_installed{false};
constexpr int kCrashSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

void write_text(int fd, const char* text) {
  size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = ::write(fd, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<size_t>(n);
  }
}

void write_number(int fd, long long value) {
  char digits[24];
  int at = sizeof(digits) - 1;
  digits[at] = 0;
  const bool negative = value < 0;
  unsigned long long v = negative ? -static_cast<unsigned long long>(value) : static_cast<unsigned long long>(value);
  do {
    digits[--at] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0 && at > 1);
  if (negative) digits[--at] = '-';
  write_text(fd, digits + at);
}

void on_crash(int number) {
  write_text(2, "\n*** signal ");
  write_number(2, number);
  write_text(2, ": the flight recorders of this process (last collectives, oldest first) ***\n");
  for (auto& slot : g_recorders) {
    if (FlightRecorder* recorder = slot.load()) write_ring_from_signal(*recorder, 2);
  }
  sigaction(number, &g_previous[number], nullptr);
  raise(number);
}

}  // namespace

void write_ring_from_signal(FlightRecorder& recorder, int fd) {
  if (!recorder.mutex_.try_lock()) return;
  for (int64_t index = recorder.oldest_kept(); index <= recorder.issued_; ++index) {
    const auto& entry = recorder.slot(index);
    if (entry.index != index) continue;
    write_text(fd, recorder.owner_.c_str());
    write_text(fd, " ");
    write_number(fd, index);
    write_text(fd, " ");
    write_text(fd, FlightRecorder::state_name(entry.state));
    write_text(fd, " ");
    write_text(fd, entry.description.c_str());
    write_text(fd, "\n");
  }
  recorder.mutex_.unlock();
}

void FlightRecorder::install_crash_dump() {
  if (g_crash_dump_installed.exchange(true)) return;
  struct sigaction action {};
  action.sa_handler = on_crash;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;
  for (int number : kCrashSignals) sigaction(number, &action, &g_previous[number]);
}

FlightRecorder::FlightRecorder(size_t capacity) : capacity_(capacity), ring_(capacity) {
  if (!enabled()) return;
  for (auto& slot : g_recorders) {
    FlightRecorder* empty = nullptr;
    if (slot.compare_exchange_strong(empty, this)) break;
  }
}

FlightRecorder::~FlightRecorder() {
  for (auto& slot : g_recorders) {
    FlightRecorder* self = this;
    slot.compare_exchange_strong(self, nullptr);
  }
}

size_t FlightRecorder::capacity_from_env() {
  const long long n = env::get_int_or("DPTRAIN_FLIGHT_RECORDER", 64);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

FlightRecorder::Entry* FlightRecorder::find(int64_t index) {
  if (index <= 0) return nullptr;
  Entry& entry = slot(index);
  return entry.index == index ? &entry : nullptr;
}

int64_t FlightRecorder::queued(const std::string& description) {
  if (!enabled()) return 0;
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t index = ++issued_;
  Entry& entry = slot(index);
  entry.index = index;
  entry.description = description;
  entry.state = State::Queued;
  entry.queued_at = std::chrono::steady_clock::now();
  return index;
}

void FlightRecorder::started(int64_t index) {
  if (!enabled()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (Entry* entry = find(index)) {
    entry->state = State::Running;
    entry->started_at = std::chrono::steady_clock::now();
  }
}

void FlightRecorder::finished(int64_t index, bool ok) {
  if (!enabled()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (Entry* entry = find(index)) {
    entry->state = ok ? State::Completed : State::Failed;
    entry->finished_at = std::chrono::steady_clock::now();
    if (ok && index > last_completed_) {
      last_completed_ = index;
      last_completed_what_ = entry->description;
      last_completed_at_ = entry->finished_at;
    }
  }
}

FlightPosition FlightRecorder::position() const {
  FlightPosition p;
  std::lock_guard<std::mutex> lock(mutex_);
  p.completed = last_completed_;
  p.completed_what = last_completed_what_;
  p.idle_s = seconds_since(last_completed_at_);
  for (int64_t index = last_completed_ + 1; index <= issued_; ++index) {
    const Entry& entry = slot(index);
    if (entry.index != index || entry.state == State::Completed) continue;
    p.in_flight = index;
    p.in_flight_what = entry.description;
    p.waiting_s = seconds_since(entry.queued_at);
    break;
  }
  return p;
}

const char* FlightRecorder::state_name(State state) {
  static const char* kNames[] = {"queued", "running", "completed", "FAILED"};
  return kNames[static_cast<int>(state)];
}

std::string FlightRecorder::dump() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  const int64_t first = oldest_kept();
  out << owner_ << ": flight recorder, the last " << (issued_ - first + 1) << " of " << issued_ << " collectives:";
  const auto now = std::chrono::steady_clock::now();
  for (int64_t index = first; index <= issued_; ++index) {
    const Entry& entry = slot(index);
    if (entry.index != index) continue;
    out << "\n  " << owner_ << " " << index << " " << state_name(entry.state) << " " << entry.description
        << " (issued " << seconds(std::chrono::duration<double>(now - entry.queued_at).count()) << " ago";
    if (entry.state == State::Completed || entry.state == State::Failed) {
      out << ", took " << seconds(std::chrono::duration<double>(entry.finished_at - entry.started_at).count());
    }
    out << ")";
  }
  return out.str();
}

std::string explain_hang(int me, const std::vector<std::pair<bool, FlightPosition>>& positions) {
  const int64_t stalled = positions.at(static_cast<size_t>(me)).second.in_flight;
  // Ranks grouped by where they are: (in flight, completed) identifies the place.
  std::map<std::pair<int64_t, int64_t>, std::vector<int>> behind, waiting;
  std::vector<int> silent;
  for (size_t rank = 0; rank < positions.size(); ++rank) {
    const auto& [answered, p] = positions[rank];
    if (!answered) {
      silent.push_back(static_cast<int>(rank));
      continue;
    }
    const bool here = p.in_flight == stalled;
    (here ? waiting : behind)[{p.in_flight, p.completed}].push_back(static_cast<int>(rank));
  }
  auto first_of = [&](const std::vector<int>& ranks) -> const FlightPosition& {
    return positions[static_cast<size_t>(ranks.front())].second;
  };
  std::ostringstream out;
  const char* separator = "";
  for (const auto& [where, ranks] : behind) {
    out << separator << ranks_text(ranks) << ": " << first_of(ranks).describe();
    separator = "; ";
  }
  if (!silent.empty()) {
    out << separator << ranks_text(silent) << ": no answer (dead, or stuck inside MPI)";
    separator = "; ";
  }
  for (const auto& [where, ranks] : waiting) {
    out << separator << ranks_text(ranks) << ": " << first_of(ranks).describe();
    separator = "; ";
  }
  return out.str();
}

}  // namespace dpt::detail
