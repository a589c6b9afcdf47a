#!/usr/bin/env bash
# README command (1): installs what is missing, builds, and trains the built-in CNN on
# Fashion-MNIST with 2 MPI ranks. Extra arguments go to `dptrain train` (e.g. --epochs 1).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
bash "$here/install-deps.sh"
# Only the dptrain command and its libraries: the tests and benchmarks are a third of the build.
# A second run finds them built and starts training at once.
DPTRAIN_BUILD_TARGETS=dptrain bash "$here/build.sh"
np=${DPTRAIN_NP:-2}
echo "[run-main-job] $here/dpt-mpirun -np $np $DPTRAIN_BUILD/bin/dptrain train $*"
exec "$here/dpt-mpirun" -np "$np" "$DPTRAIN_BUILD/bin/dptrain" train "$@"
