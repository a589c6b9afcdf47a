#!/usr/bin/env bash
# README command (2): installs what is missing, builds, and runs every test (CTest).
# Extra arguments go to ctest (e.g. -L mpi, -R Communicator).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
bash "$here/install-deps.sh"
bash "$here/build.sh"
cd "$DPTRAIN_BUILD"
# As many tests at once as there are cores (the multi-rank ones declare their ranks as PROCESSORS):
# 153 tests in 619 s this way on the 2-core VM (2026-12-02).
ctest --output-on-failure --timeout 1500 -j "$(nproc)" "$@"
