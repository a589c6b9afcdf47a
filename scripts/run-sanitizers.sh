#!/usr/bin/env bash
# Builds dptrain with sanitizers and runs the tests under them (too slow for CI's budget, so a
# script: run it before a release or after touching threads, the reducer or the pool).
#   scripts/run-sanitizers.sh address   # ASan + UBSan: unit and mpi tests (np 1..4)
#   scripts/run-sanitizers.sh thread    # TSan: preprocessing pool, DataParallel and the DDP reducer
#   scripts/run-sanitizers.sh           # both
# libtorch itself is not instrumented: tests/sanitizers/*.supp hold the suppressions for it and
# for OpenMPI, each with the reason.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
supp=$DPTRAIN_ROOT/tests/sanitizers
kinds=("$@"); [ ${#kinds[@]} -eq 0 ] && kinds=(address thread)
status=0
for kind in "${kinds[@]}"; do
  build=$DPTRAIN_ROOT/build-$kind
  echo "[sanitizers] building with DPTRAIN_SANITIZE=$kind in $build"
  DPTRAIN_BUILD=$build bash "$here/build.sh" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPTRAIN_SANITIZE=$kind \
    -DDPTRAIN_BUILD_BENCHMARKS=OFF -DDPTRAIN_BUILD_EXAMPLES=OFF >/dev/null
  case $kind in
    address)
      # protect_shadow_gap=0: CUDA's runtime maps memory where ASan keeps its shadow gap.
      export ASAN_OPTIONS="protect_shadow_gap=0:detect_leaks=1:detect_odr_violation=0:abort_on_error=0:halt_on_error=1"
      export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
      export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
      (cd "$build" && ctest --output-on-failure -L unit --timeout 1800) || status=1
      # The multi-rank tests without LeakSanitizer: at MPI_Finalize Open MPI dlcloses its MCA
      # components, so their process-lifetime allocations are reported as leaks from unknown
      # modules that no suppression can name. ASan and UBSan stay on.
      (cd "$build" && ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" ctest --output-on-failure -L mpi --timeout 1800) \
        || status=1
      ;;
    thread)
      export TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1"
      "$build/tests/unit_tests" --gtest_filter='*DataPool*:*Preprocess*:*Loader*:*DataParallel*' || status=1
      # Shared memory only: Open MPI's TCP transport crashes at MPI_Finalize under TSan (even with
      # no test run at all), outside our code.
      for np in 2 3; do
        OMPI_MCA_btl=self,vader "$here/dpt-mpirun" -np $np -x TSAN_OPTIONS "$build/tests/mpi_tests" \
          --gtest_filter='*Ddp*:*Reducer*' || status=1
      done
      ;;
  esac
done
[ $status -eq 0 ] && echo "[sanitizers] clean" || echo "[sanitizers] FAILED"
exit $status
