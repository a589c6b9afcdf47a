# Sourced by the shell CLI tests: paths, a runner that records output and exit code, and checks.
set -euo pipefail
DPTRAIN="$DPTRAIN_BIN/dptrain"
MPIRUN="$DPTRAIN_MPIRUN"
DATA=${DPTRAIN_TEST_DATA:-/usr/share/datasets/fashion-mnist}
# Every command gets a hard limit, so a hang fails the test instead of blocking CI.
LIMIT=${DPTRAIN_CLI_TIMEOUT:-60}

fail() { echo "FAIL: $*" >&2; exit 1; }

# run NAME CMD...: runs CMD with a time limit; stdout+stderr in NAME.log, exit code in $rc.
run() {
  local name=$1; shift
  set +e
  timeout -k 5 "$LIMIT" "$@" >"$name.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then cat "$name.log"; fail "$name: timed out after ${LIMIT}s (hang?)"; fi
}

# expect_ok NAME CMD...
expect_ok() {
  local name=$1
  run "$@"
  [ "$rc" = 0 ] || { cat "$name.log"; fail "$name: exit code $rc, expected 0"; }
}

# expect_error NAME CODE PATTERN CMD...: exit code CODE and PATTERN (grep -E) in the output,
# no abort / core dump / C++ backtrace.
expect_error() {
  local name=$1 code=$2 pattern=$3; shift 3
  run "$name" "$@"
  [ "$rc" = "$code" ] || { cat "$name.log"; fail "$name: exit code $rc, expected $code"; }
  grep -Eq -- "$pattern" "$name.log" || { cat "$name.log"; fail "$name: output lacks /$pattern/"; }
  if grep -Eq "terminate called|Aborted|core dumped|Segmentation|Exception raised from" "$name.log"; then
    cat "$name.log"; fail "$name: crashed instead of a clean error"
  fi
  echo "ok: $name -> exit $rc: $(grep -E -m1 -- "$pattern" "$name.log")"
}

# expect_equal_models A.pt B.pt WHAT: the two TorchScript files hold bitwise equal tensors.
expect_equal_models() {
  "$DPTRAIN_PYTHON" - "$@" <<'PY'
import sys, torch
a_path, b_path, what = sys.argv[1:4]
a, b = torch.jit.load(a_path).state_dict(), torch.jit.load(b_path).state_dict()
bad = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
if bad:
    sys.exit(f"FAIL: {what}: {b_path} differs from {a_path} in " + ", ".join(bad))
print(f"ok: {what}: {a_path} and {b_path} are bitwise equal")
PY
}
