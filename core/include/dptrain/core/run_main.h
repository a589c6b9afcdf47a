// The body of every dptrain program's main(): errors become one clear line and an exit code.
#pragma once

#include <functional>
#include <string>

namespace dpt {

// Exit codes shared by all dptrain programs, so scripts can tell failures apart.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,          // any dpt::Error or std::exception
  kExitUsage = 2,          // bad command line / option value
  kExitPeerFailure = 3,    // another rank died or a collective timed out
  kExitStopped = 75,       // stopped on request (SIGTERM, SIGINT, SIGUSR1) after writing a checkpoint:
                           // continue with --resume (75 is sysexits' EX_TEMPFAIL, "try again later")
};

int exit_code_for_current_exception();

// Runs `body`; on an exception prints "<program>: error: <message>" (with the rank when known),
// calls the fatal hook (set by the parallel layer to take the other ranks down instead of leaving
// them in a collective), and returns a non-zero exit code.
int run_main(const char* program, const std::function<int()>& body);

// Called with the exit code after the error line is printed, before run_main returns. The
// parallel layer installs one that aborts the whole job when more than one rank runs.
void set_fatal_hook(std::function<void(int exit_code)> hook);

// For a failure found off the main thread (a communicator's watchdog) that the main thread may
// never get to report, blocked as it can be: prints "error: <message>" the way run_main does, runs
// the fatal hook, and ends the process with `exit_code`.
[[noreturn]] void fail_fast(const std::string& message, int exit_code);

}  // namespace dpt
