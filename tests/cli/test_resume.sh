# Interrupt and resume equals uninterrupted (bitwise), under mpirun -np 2, with the built-in CNN
# (dropout: the RNG state is part of the checkpoint) and Adam (optimizer state too). Then: a
# corrupt newest checkpoint is named and `--resume` (latest) falls back to the previous one; an
# explicitly named corrupt file is an error naming it; resuming at world size 1 re-shards and says so.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
common=(train --model cnn --data "$DATA" --limit-samples 640 --batch-size 16 --epochs 2 --optimizer adam
        --lr 0.002 --seed 3 --metrics "" --no-eval --log-every 5)

expect_ok full "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --out full.pt
# 640 samples / (2 ranks x 16) = 20 steps per epoch: stop in the middle of epoch 2.
expect_ok part1 "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt --stop-after-steps 25
grep -q "stopped early" part1.log || { cat part1.log; fail "part1 did not report stopping early"; }
ls ckpt/checkpoint-0000000020.pt ckpt/checkpoint-0000000025.pt >/dev/null || fail "expected checkpoints at steps 20 and 25"
expect_ok part2 "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt --resume --out resumed.pt
grep -q "resumed from .*checkpoint-0000000025.pt" part2.log || { cat part2.log; fail "part2 did not resume from step 25"; }

expect_equal_models full.pt resumed.pt "interrupted + resumed run vs the uninterrupted one"

# Corrupt the newest checkpoint (flip a byte in the middle): latest falls back, explicit file fails.
cp -r ckpt ckpt2
"$DPTRAIN_PYTHON" - <<'PY'
import os
path = "ckpt2/checkpoint-0000000040.pt"
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0xFF
open(path, "wb").write(bytes(data))
PY
expect_error corrupt_explicit 1 "checkpoint-0000000040.pt is corrupt" \
  "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --epochs 3 --resume ckpt2/checkpoint-0000000040.pt
expect_ok corrupt_latest "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --epochs 3 --checkpoint-dir ckpt2 --resume
grep -q "checkpoint-0000000040.pt is corrupt" corrupt_latest.log || { cat corrupt_latest.log; fail "the corrupt file was not named"; }
grep -q "resumed from .*checkpoint-0000000025.pt" corrupt_latest.log || { cat corrupt_latest.log; fail "did not fall back to step 25"; }
echo "ok: a corrupt newest checkpoint is named and the previous one is used"

# Truncated checkpoint, explicit: the error names the file.
head -c 1000 ckpt/checkpoint-0000000040.pt > truncated.pt
expect_error truncated 1 "truncated.pt is truncated" "$DPTRAIN" "${common[@]}" --resume truncated.pt

# A different world size: one process continues the 2-rank run, re-sharding the data.
expect_ok reshard "$DPTRAIN" "${common[@]}" --epochs 3 --checkpoint-dir ckpt --resume
grep -q "re-sharded" reshard.log || { cat reshard.log; fail "resuming at world size 1 did not say it re-sharded"; }
echo "ok: resuming on 1 rank from a 2-rank checkpoint re-shards and says so"
