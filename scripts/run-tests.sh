#!/usr/bin/env bash
# README command (2): installs what is missing, builds, and runs every test (CTest).
# Extra arguments go to ctest (e.g. -L mpi, -R Communicator).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
bash "$here/install-deps.sh"
bash "$here/build.sh"
cd "$DPTRAIN_BUILD"
ctest --output-on-failure --timeout 1500 "$@"
