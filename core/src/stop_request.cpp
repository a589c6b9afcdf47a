#include "dptrain/core/stop_request.h"

#include <atomic>
#include <csignal>

#include <unistd.h>

#include "dptrain/core/run_main.h"

namespace dpt {
namespace {

// Written by the signal handler: lock-free atomics only (async-signal-safe).
std::atomic<bool> g_installed{false};
std::atomic<bool> g_requested{false};
std::atomic<int> g_signal{0};
std::atomic<bool> g_deferred{false};  // a loop reads the flag: a first signal only sets it
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

void on_signal(int number) {
  if (g_requested.load() && (number == SIGINT || number == SIGTERM)) {
    // Asked twice: the default action (termination), now.
    std::signal(number, SIG_DFL);
    std::raise(number);
    return;
  }
  if (!g_deferred.load()) {
    // Nothing reads the flag yet (the data is being opened, the model read): nothing to save
    // either, so stop now, as asked, rather than when the first step comes.
    static const char message[] = "dptrain: stopped by a signal before training started; nothing to save\n";
    if (::write(STDERR_FILENO, message, sizeof(message) - 1) < 0) {}
    ::_exit(kExitStopped);
  }
  g_signal.store(number);
  g_requested.store(true);
}

}  // namespace

void StopRequest::install() {
  if (g_installed.exchange(true)) return;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking calls in progress resume; the loop reads the flag
  for (int number : {SIGTERM, SIGINT, SIGUSR1}) sigaction(number, &action, nullptr);
}

bool StopRequest::installed() { return g_installed.load(); }
bool StopRequest::requested() { return g_requested.load(); }
int StopRequest::signal_number() { return g_signal.load(); }

void StopRequest::request(int signal_number) {
  g_signal.store(signal_number);
  g_requested.store(true);
}

void StopRequest::defer(bool deferred) { g_deferred.store(deferred); }

void StopRequest::clear() {
  g_requested.store(false);
  g_signal.store(0);
}

}  // namespace dpt
