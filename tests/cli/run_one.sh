#!/usr/bin/env bash
# Runs one end-to-end test of the dptrain program (tests/cli/test_*.sh or test_*.py) in a fresh
# temporary directory, which is removed afterwards unless the test fails.
# CTest sets DPTRAIN_BIN, DPTRAIN_PYTHON, DPTRAIN_MPIRUN, DPTRAIN_SOURCE_DIR and DPTRAIN_BUILD_DIR.
# Exit code 77 from a test means "skipped" (reported as a pass with a message).
set -uo pipefail
script=$1
: "${DPTRAIN_BIN:?set by CTest: the directory holding dptrain}"
: "${DPTRAIN_PYTHON:?set by CTest: the venv python with torch}"
: "${DPTRAIN_MPIRUN:?set by CTest: scripts/dpt-mpirun}"
export DPTRAIN_BIN DPTRAIN_PYTHON DPTRAIN_MPIRUN
export DPTRAIN_CLI_HELPERS
DPTRAIN_CLI_HELPERS=$(cd "$(dirname "$script")" && pwd)
export PYTHONPATH="$DPTRAIN_CLI_HELPERS${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=1
work=$(mktemp -d "${TMPDIR:-/tmp}/dptrain-cli-XXXXXX")
cd "$work" || exit 1
case "$script" in
  *.py) "$DPTRAIN_PYTHON" "$script" ;;
  *) bash "$script" ;;
esac
rc=$?
if [ "$rc" = 77 ]; then
  echo "[run_one] $(basename "$script"): skipped"
  rc=0
fi
if [ "$rc" = 0 ]; then
  rm -rf "$work"
else
  echo "[run_one] $(basename "$script") failed (exit $rc); files kept in $work"
fi
exit "$rc"
