#!/usr/bin/env bash
# A rank that dies (SIGKILL) or hangs must not leave the others waiting: the whole mpirun job
# exits non-zero well within 60 s, and for a hang the message names the timed-out collective and
# (flight recorder) the rank behind it.
set -uo pipefail
mpi_tests="$DPTRAIN_BUILD_DIR/tests/mpi_tests"
[ -x "$mpi_tests" ] || { echo "no mpi_tests binary (MPI off?)"; exit 77; }

run_drill() {  # drill name -> sets rc, elapsed, log
  local start=$SECONDS
  DPTRAIN_TEST_DRILL=$1 timeout 90 "$DPTRAIN_MPIRUN" -x DPTRAIN_TEST_DRILL -np 3 "$mpi_tests" \
    --gtest_filter='CommFailureDrill.*' >"drill_$1.log" 2>&1
  rc=$?
  elapsed=$((SECONDS - start))
}

fail=0
for drill in kill segv hang; do
  run_drill "$drill"
  echo "drill $drill: exit $rc after ${elapsed}s"
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$elapsed" -gt 60 ]; then
    echo "FAIL: drill $drill must end the job non-zero within 60 s"; cat "drill_$drill.log"; fail=1
  fi
done
# A crashing rank writes its last collectives before it goes (the crash dump of the recorder).
if grep -Eq "^mpi rank 1/3 [0-9]+ completed allreduce\(sum\)" drill_segv.log; then
  echo "ok: the crashed rank left its flight recorder: $(grep -Em1 '^mpi rank 1/3 [0-9]+ completed' drill_segv.log)"
else
  echo "FAIL: no flight recorder from the rank that crashed"; cat drill_segv.log; fail=1
fi
if ! grep -q "did not complete within 3 s" drill_hang.log; then
  echo "FAIL: the hang drill does not name the timed-out collective"; cat drill_hang.log; fail=1
fi
# The flight recorder names the rank behind the hang: rank 1 sleeps after its first allreduce,
# ranks 0 and 2 wait in the next one.
behind='flight recorder: rank 1: at allreduce\(sum\) #[0-9]+ [^;]*\(completed\), not in a collective for [0-9.]+ s; ranks 0, 2: waiting in allreduce\(sum\) #[0-9]+'
if grep -Eq "$behind" drill_hang.log; then
  echo "ok: $(grep -Eo 'flight recorder: .*' drill_hang.log | head -1)"
else
  echo "FAIL: the hang drill's error does not name rank 1 as the one behind"; cat drill_hang.log; fail=1
fi
if ! grep -Eq "flight recorder, the last [0-9]+ of [0-9]+ collectives" drill_hang.log; then
  echo "FAIL: no flight recorder dump in the log"; cat drill_hang.log; fail=1
fi
exit $fail
