// A request to stop a run cleanly, from a signal: SIGTERM (cluster schedulers, `kill`), SIGINT
// (Ctrl-C) and SIGUSR1 (SLURM's `--signal=USR1@T` warning before the time limit; what
// scripts/dpt-mpirun forwards to the ranks when it is itself asked to stop, since mpirun
// answers SIGTERM by killing the ranks a second later).
//
//   dpt::StopRequest::install();          // the dptrain command does this for `train`
//   ... if (dpt::StopRequest::requested()) { checkpoint; exit(dpt::kExitStopped); }
//
// Until a loop says it reads the flag (defer(true): the Trainer's fit loop, from its first step),
// a signal ends the process at once with kExitStopped: opening data or reading a model is never
// held up to the first step, and there is nothing to checkpoint yet. Then the first signal only
// sets a flag, which the training loop reads between steps (the Trainer
// agrees on it across ranks, writes a checkpoint and returns; `dptrain train` then exits with
// kExitStopped). A second SIGINT or SIGTERM ends the process at once, as it would have without
// the handler: a user pressing Ctrl-C twice is never kept waiting.
#pragma once

namespace dpt {

class StopRequest {
 public:
  // Installs the handlers (idempotent, process-wide). Programs that never call it keep the
  // default signal actions, and the Trainer does not spend a collective per step on agreeing.
  static void install();
  static bool installed();
  // Whether a stop was requested, and by which signal (0: none, or request() without one).
  static bool requested();
  static int signal_number();
  // What the handler does, for tests and for programs with their own reasons to stop.
  static void request(int signal_number = 0);
  // Whether a first signal waits for a loop to read the flag (true) or ends the process (false,
  // the state after install()).
  static void defer(bool deferred);
  static void clear();
};

}  // namespace dpt
