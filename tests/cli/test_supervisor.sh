# dpt-mpirun --max-restarts: a failed job is rerun from its newest checkpoint.
#  (a) chaos: a 3-rank job whose ranks are SIGKILLed three times finishes by itself, bitwise equal
#      to an uninterrupted 3-rank run, every checkpoint left intact;
#  (b) restarts used up: non-zero exit with the last cause; a usage error is never rerun;
#  (c) --min-np: a launch that never reaches training is rerun with one rank fewer;
#  (d) SIGTERM to the supervisor: the job checkpoints and stops (75), and is not restarted.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
LIMIT=$((LIMIT * 3))
# 1920 samples / (3 ranks x 16) = 40 steps per epoch, 320 in all; a checkpoint every 7 steps.
common=(train --model cnn --data "$DATA" --limit-samples 1920 --batch-size 16 --epochs 8 --optimizer adam
        --lr 0.002 --seed 5 --metrics "" --no-eval --log-every 10 --checkpoint-every 7 --keep-checkpoints 3)

expect_ok full "$MPIRUN" -np 3 "$DPTRAIN" "${common[@]}" --out full.pt

# --- (a) chaos -------------------------------------------------------------------------------------
"$MPIRUN" --max-restarts 6 -np 3 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt --out chaos.pt >chaos.log 2>&1 &
job=$!
newest() { ls ckpt/checkpoint-*.pt 2>/dev/null | tail -n 1 || true; }
kills=0 last="" killed_launcher=""
deadline=$((SECONDS + LIMIT))
while [ "$kills" -lt 3 ] && kill -0 "$job" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
  # Each kill waits for a checkpoint newer than the last kill's, so the job makes progress.
  now=$(newest)
  if [ -n "$now" ] && [ "$now" != "$last" ]; then
    sleep "0.$((RANDOM % 8 + 1))"
    # A rank of the run now going: a child of the supervisor's current mpirun. (Ranks of the run
    # killed before may linger a moment - mpirun's SIGTERM is a stop request to them now - and
    # killing one of those would count a kill that restarts nothing.)
    # And not a rank of the run killed last: until the supervisor has started the next mpirun,
    # that run's other ranks go on (even to a newer checkpoint), and a second kill there would
    # count a kill that restarts nothing (seen: two kills, one restart).
    launcher=$(pgrep -P "$job" -x mpirun | tail -n 1 || true)
    [ "$launcher" = "$killed_launcher" ] && launcher=""
    victim=$([ -n "$launcher" ] && pgrep -P "$launcher" -f -- "^[^ ]*/dptrain train " | shuf -n 1 || true)
    if [ -n "$victim" ]; then
      kill -KILL "$victim" 2>/dev/null && kills=$((kills + 1)) && last=$(newest) && killed_launcher=$launcher
      echo "chaos: SIGKILL to rank process $victim after $(basename "$last")"
    fi
  fi
  sleep 0.05
done
set +e; timeout -k 5 "$LIMIT" tail --pid="$job" -f /dev/null; wait "$job"; rc=$?; set -e
[ "$rc" = 0 ] || { cat chaos.log; fail "chaos: exit code $rc, expected 0"; }
[ "$kills" = 3 ] || { cat chaos.log; fail "chaos: the job ended after $kills kill(s), before 3: make it longer"; }
restarts=$(grep -c "dpt-mpirun: restart " chaos.log || true)
[ "$restarts" -ge 3 ] || { cat chaos.log; fail "chaos: $restarts restart(s) logged for 3 kills"; }
grep "dpt-mpirun: restart " chaos.log | cut -c1-220
expect_equal_models full.pt chaos.pt "3 ranks SIGKILLed 3 times + restarted vs uninterrupted"
"$DPTRAIN_PYTHON" - <<'PY'
import glob, sys, torch
files = sorted(glob.glob("ckpt/checkpoint-*.pt"))
steps = [torch.load(f, weights_only=False)["step"] for f in files]
if not files or steps[-1] != 320:
    sys.exit(f"FAIL: chaos: checkpoints {files} (steps {steps}): the last should be step 320")
print(f"ok: chaos: every checkpoint left loads in PyTorch (steps {steps})")
PY

# --- (b) restarts used up; usage errors not rerun ------------------------------------------------------
expect_error used_up 1 "giving up after 2 restart\(s\) \(--max-restarts 2\); last failure \(exit 1\): .*error: boom" \
  "$MPIRUN" --max-restarts 2 -np 2 bash -c 'echo "error: boom" >&2; exit 1'
[ "$(grep -c 'dpt-mpirun: restart ' used_up.log)" = 2 ] || { cat used_up.log; fail "used_up: not 2 restarts"; }
expect_error usage 2 "usage error \(exit 2\), not restarted" \
  "$MPIRUN" --max-restarts 3 -np 2 "$DPTRAIN" train --batch-size 0

# --- (c) --min-np ----------------------------------------------------------------------------------------
# A stand-in for a launch that cannot use 2 ranks (a host gone): fails before training at world 2.
expect_ok min_np "$MPIRUN" --max-restarts 2 --min-np 1 -np 2 bash -c \
  '[ "$OMPI_COMM_WORLD_SIZE" = 1 ] || { echo "error: cannot reach host" >&2; exit 1; }; echo "training: at world 1"'
grep -q "with 1 rank(s) (the last run never started training)" min_np.log || { cat min_np.log; fail "min_np: no rank dropped"; }
echo "ok: min_np: $(grep -m1 'restart 1/2' min_np.log | cut -c1-200)"

# --- (d) a stop request is not restarted -----------------------------------------------------------------
"$MPIRUN" --max-restarts 3 -np 3 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt_stop --log-every 1 --out stop.pt \
  >stop.log 2>&1 &
job=$!
for _ in $(seq 1 1200); do grep -q "step 20 " stop.log && break; sleep 0.05; done
kill -TERM "$job"
set +e; timeout -k 5 "$LIMIT" tail --pid="$job" -f /dev/null; wait "$job"; rc=$?; set -e
[ "$rc" = 75 ] || { cat stop.log; fail "stop: exit code $rc, expected 75"; }
grep -q "stopped on request (exit 75): not restarted" stop.log || { cat stop.log; fail "stop: no 'not restarted' line"; }
! grep -q "dpt-mpirun: restart " stop.log || { cat stop.log; fail "stop: restarted after a stop request"; }
ls ckpt_stop/checkpoint-*.pt >/dev/null || fail "stop: no checkpoint"
echo "ok: stop: SIGTERM to the supervisor -> exit 75, $(ls ckpt_stop/checkpoint-*.pt | tail -n 1), not restarted"

# --- --max-restarts after other mpirun options would reach mpirun (its own process recovery) --------------
expect_error misplaced 2 "--max-restarts must come first" "$MPIRUN" -np 2 --max-restarts 3 true
