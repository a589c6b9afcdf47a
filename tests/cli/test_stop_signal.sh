# Preemption: a running job asked to stop writes a checkpoint at a step boundary, every rank exits
# with 75, and --resume continues it to parameters bitwise equal to an uninterrupted run.
#  (a) SIGTERM to dpt-mpirun (a user's kill, Ctrl-C): forwarded to the ranks as SIGUSR1;
#  (b) SIGTERM to one rank only (a scheduler reaches ranks at different moments): the ranks agree
#      and stop at the same step.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
# 1280 samples / (2 ranks x 16) = 40 steps per epoch, 400 in all: long enough to be stopped midway.
common=(train --model mlp --data "$DATA" --limit-samples 1280 --batch-size 16 --epochs 10 --optimizer adam
        --lr 0.002 --seed 5 --metrics "" --no-eval --log-every 1 --keep-checkpoints 2)

expect_ok full "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --out full.pt

# Starts the job in the background (its output in NAME.log) and waits until it logged step 30.
start_job() {
  local name=$1; shift
  "$@" >"$name.log" 2>&1 &
  job=$!
  for _ in $(seq 1 1200); do
    grep -q "step 30 " "$name.log" 2>/dev/null && return 0
    kill -0 "$job" 2>/dev/null || break
    sleep 0.05
  done
  cat "$name.log"; fail "$name: never reached step 30"
}

# finish_stopped NAME: the job exited 75 after a checkpoint, each rank said why.
finish_stopped() {
  local name=$1
  set +e; timeout -k 5 "$LIMIT" tail --pid="$job" -f /dev/null; wait "$job"; rc=$?; set -e
  [ "$rc" = 75 ] || { cat "$name.log"; fail "$name: exit code $rc, expected 75 (stopped on request)"; }
  grep -q "asked to stop" "$name.log" || { cat "$name.log"; fail "$name: no 'asked to stop' line"; }
  grep -q "stopped early" "$name.log" || { cat "$name.log"; fail "$name: the job ran to the end instead of stopping"; }
  ls "ckpt_$name"/checkpoint-*.pt >/dev/null || { cat "$name.log"; fail "$name: no checkpoint written"; }
  echo "ok: $name -> exit 75: $(grep -m1 -o 'stopping at step [0-9]*: asked to stop[^;]*' "$name.log")"
}

# (a) SIGTERM to dpt-mpirun.
start_job term "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt_term --out term.pt
kill -TERM "$job"
finish_stopped term
expect_ok term_resumed "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt_term --resume --out term.pt
expect_equal_models full.pt term.pt "stopped by SIGTERM to dpt-mpirun + resumed vs uninterrupted"

# (b) SIGTERM to rank 1 alone.
start_job rank "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt_rank --out rank.pt
rank1=$(pgrep -n -P "$(pgrep -P "$job" -x mpirun)" -f dptrain || true)
[ -n "$rank1" ] || fail "rank: no rank process found"
kill -TERM "$rank1"
finish_stopped rank
steps=$(grep -o 'stopping at step [0-9]*' rank.log | sort -u | wc -l)
[ "$steps" = 1 ] || { cat rank.log; fail "rank: the ranks stopped at different steps"; }
expect_ok rank_resumed "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt_rank --resume --out rank.pt
expect_equal_models full.pt rank.pt "one rank signalled + resumed vs uninterrupted"
