# What dptrain writes for the user is never half-written and never silently lost: --out goes to a
# temporary file renamed over the old one (a full disk keeps the old model, one error line);
# partial files of killed runs are removed by the next run; a metrics file that cannot be written
# ends the run when it was asked for and is one warning when it is the default; two jobs cannot
# share a --checkpoint-dir, and a dead job's lock does not block the next one.
# A full disk is a file-size limit here (ulimit -f, SIGXFSZ ignored: writes fail with EFBIG) or
# /dev/full (ENOSPC). Limited runs are one torchrun-style rank (the store backend): MPI's own
# start-up files would not fit under the limit.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
small=(train --model mlp --data "$DATA" --limit-samples 256 --batch-size 16 --no-eval)
# limited KB CMD...: CMD under the limit, its output through a pipe (the log file is not limited).
limited() {
  RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 bash -c 'trap "" XFSZ; ulimit -f "$0"; exec "$@"' "$@" 2>&1 | cat
  return "${PIPESTATUS[0]}"
}
export -f limited

expect_ok first "$DPTRAIN" "${small[@]}" --max-steps 2 --metrics "" --out model.pt
before=$(md5sum < model.pt)
size_kb=$(( $(stat -c %s model.pt) / 1024 ))
expect_error out_full 1 "model.pt: write failed" bash -c "limited $((size_kb / 2)) $DPTRAIN ${small[*]} --max-steps 3 --metrics '' --out model.pt"
[ "$(grep -c "error" out_full.log)" = 1 ] || { cat out_full.log; fail "out_full: expected one error line"; }
[ "$(md5sum < model.pt)" = "$before" ] || fail "a failed --out write changed the previous model"
ls model.pt.tmp.* 2>/dev/null && fail "a failed --out write left its temporary file"
echo "ok: a full disk during --out keeps the previous model.pt intact"

# A run killed while writing leaves model.pt.tmp.<pid>: the next write of model.pt removes it.
sleep 0 & dead=$!; wait "$dead"
printf 'partial' > "model.pt.tmp.$dead"
expect_ok cleanup "$DPTRAIN" "${small[@]}" --max-steps 2 --metrics "" --out model.pt
[ ! -e "model.pt.tmp.$dead" ] || fail "the stale model.pt.tmp.$dead was not removed"
grep -q "removed model.pt.tmp.$dead" cleanup.log || { cat cleanup.log; fail "the removal was not reported"; }
echo "ok: a killed run's partial file is removed and reported"
# A checkpoint's partial write: its step may never be written again, so the directory is cleaned.
mkdir -p stale_ckpt && printf 'partial' > "stale_ckpt/checkpoint-0000000099.pt.tmp.$dead"
expect_ok stale_checkpoint "$DPTRAIN" "${small[@]}" --max-steps 1 --metrics "" --checkpoint-dir stale_ckpt
[ ! -e "stale_ckpt/checkpoint-0000000099.pt.tmp.$dead" ] || fail "the stale checkpoint temporary was not removed"
grep -q "removed stale_ckpt/checkpoint-0000000099.pt.tmp.$dead" stale_checkpoint.log ||
  { cat stale_checkpoint.log; fail "the checkpoint temporary's removal was not reported"; }
echo "ok: a killed run's partial checkpoint is removed when the directory is opened"

# An --out that exists and is not a regular file would be replaced by the rename: refused.
mkfifo fifo.pt
expect_error out_fifo 2 "fifo.pt exists and is not a regular file" "$DPTRAIN" "${small[@]}" --max-steps 1 --out fifo.pt

# Metrics asked for (--metrics) on a full disk: the run ends, naming the file.
expect_error metrics_full 1 "--metrics /dev/full: write failed \(No space left on device\)" \
  "$DPTRAIN" "${small[@]}" --max-steps 3 --log-every 1 --metrics /dev/full
# The default metrics file (nobody asked): one warning, and the run goes on to the end.
expect_ok metrics_default bash -c "limited 2 $DPTRAIN ${small[*]} --max-steps 40 --log-every 1"
[ "$(grep -c "dptrain-metrics.jsonl: write failed" metrics_default.log)" = 1 ] ||
  { cat metrics_default.log; fail "metrics_default: expected exactly one warning"; }
grep -q "dptrain train: 40 steps" metrics_default.log || { cat metrics_default.log; fail "metrics_default did not finish"; }
echo "ok: the default metrics file failing is one warning; the run finishes"
# TensorBoard events on a full disk: the run ends, naming the file.
expect_error tensorboard_full 1 "events.out.tfevents.*: write failed" \
  bash -c "limited 1 $DPTRAIN ${small[*]} --max-steps 60 --log-every 1 --metrics '' --tensorboard tb"

# Two jobs, one --checkpoint-dir: the second is refused while the first runs.
job=("${small[@]}" --epochs 1000 --metrics "" --checkpoint-dir shared_ckpt)
setsid "$MPIRUN" -np 2 "$DPTRAIN" "${job[@]}" > holder.log 2>&1 &
holder=$!
for _ in $(seq 600); do grep -q "training:" holder.log && break; sleep 0.1; done
grep -q "training:" holder.log || { kill -9 -- -"$holder"; cat holder.log; fail "the first job did not start"; }
expect_error lock_busy 2 "--checkpoint-dir shared_ckpt is in use by another job \(pid [0-9]+ on " \
  "$DPTRAIN" "${small[@]}" --max-steps 1 --metrics "" --checkpoint-dir shared_ckpt
# Killed (no chance to clean up): its lock dies with it, and the next job takes the directory.
kill -9 -- -"$holder"; pkill -9 -f -- "--checkpoint-dir shared_ckpt" || true; wait "$holder" 2>/dev/null || true
expect_ok lock_after_kill "$DPTRAIN" "${small[@]}" --max-steps 1 --metrics "" --checkpoint-dir shared_ckpt
echo "ok: a dead job's lock does not block the next job"
