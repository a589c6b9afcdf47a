# A job killed mid-epoch (SIGKILL to mpirun and every rank, as when a node dies) and rerun with
# --resume ends with parameters bitwise equal to an uninterrupted run. The kill may land while a
# checkpoint is being written: the atomic write must leave only whole checkpoints behind.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
# 640 samples / (2 ranks x 16) = 20 steps per epoch, 120 steps in all; a checkpoint every 7 steps
# so most of them fall in the middle of an epoch.
common=(train --model cnn --data "$DATA" --limit-samples 640 --batch-size 16 --epochs 6 --optimizer adam
        --lr 0.002 --seed 5 --metrics "" --no-eval --log-every 5 --checkpoint-every 7
        --keep-checkpoints 2)

expect_ok full "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --out full.pt

# Start the same job in its own process group, wait for its third checkpoint, kill the group.
setsid "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt --out killed.pt >killed.log 2>&1 &
job=$!
for _ in $(seq 1 600); do
  [ -e ckpt/checkpoint-0000000021.pt ] && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.05
done
kill -KILL -- "-$job" 2>/dev/null || true
# mpirun starts the ranks in process groups of their own: kill them by name too (a dead node takes
# them all; a rank left running would still hold --checkpoint-dir's lock, rightly).
pkill -KILL -f -- "--checkpoint-dir ckpt --out killed.pt" 2>/dev/null || true
wait "$job" 2>/dev/null || true
[ -e killed.pt ] && { cat killed.log; fail "the job finished before it could be killed; make it longer"; }
ls ckpt/checkpoint-*.pt >/dev/null 2>&1 || { cat killed.log; fail "no checkpoint written before the kill"; }
ls ckpt | grep -v '^checkpoint-[0-9]*\.pt$' && echo "note: leftover temporary files (ignored by --resume): $(ls ckpt)"
echo "killed after checkpoints: $(ls ckpt | tr '\n' ' ')"

expect_ok resumed "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt --resume --out resumed.pt
grep -Eq "resumed from .*checkpoint-[0-9]+\.pt" resumed.log || { cat resumed.log; fail "the rerun did not resume"; }
echo "$(grep -Eo 'resumed from .*checkpoint-[0-9]+\.pt' resumed.log | head -1)"

expect_equal_models full.pt resumed.pt "killed mid-epoch + resumed vs uninterrupted"
