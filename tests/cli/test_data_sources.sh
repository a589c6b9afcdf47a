# The data sources of `--data`, each against the IDX source it was converted from, at world size 2:
# a tensor file gives bitwise the IDX result; 4 shards give bitwise the result of a tensor file
# holding the same samples in the order the shards are dealt to the ranks; a --transform written in
# PyTorch gives the same result with 0, 1 and 3 workers; a killed and resumed run on shards ends
# bitwise equal to an uninterrupted one; bad files get one clear error each.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
make() { "$DPTRAIN_PYTHON" "$DPTRAIN_SOURCE_DIR/scripts/data/make_datasets.py" --idx "$DATA" "$@" >/dev/null; }
quiet=(--metrics "" --log-every 0)

# (b) tensor file == IDX files (same samples, same order, same arithmetic).
make --format tensors --out tensors --limit 2000
small=(--limit-samples 2000 --batch-size 32 --epochs 1 --seed 3 "${quiet[@]}")
expect_ok idx "$MPIRUN" -np 2 "$DPTRAIN" train --data "$DATA" "${small[@]}" --out idx.pt
expect_ok tensors "$MPIRUN" -np 2 "$DPTRAIN" train --data tensors "${small[@]}" --out tensors.pt
grep -q "tensor files" tensors.log || { cat tensors.log; fail "the tensor-file source was not detected and named"; }
expect_equal_models idx.pt tensors.pt "tensor file vs IDX"

# (b) 4 shards == one tensor file in the shards' dealing order: without shuffling, rank r streams
# shards r, r+2 (file order), and the indexed source gives rank r positions r, r+2, r+4, ...
make --format shards --shards 4 --out shards --limit 2000
"$DPTRAIN_PYTHON" - <<'PY'
import os, torch
shards = [torch.load(f"shards/train-{i:05d}.pt") for i in range(4)]
streams = [torch.cat([shards[r]["inputs"], shards[r + 2]["inputs"]]) for r in (0, 1)]
targets = [torch.cat([shards[r]["targets"], shards[r + 2]["targets"]]) for r in (0, 1)]
inputs = torch.stack(streams, dim=1).flatten(0, 1)   # [s0_0, s1_0, s0_1, s1_1, ...]
labels = torch.stack(targets, dim=1).flatten(0, 1)
os.makedirs("dealt", exist_ok=True)
torch.save({"inputs": inputs, "targets": labels}, "dealt/train.pt")
os.link("shards/test.pt", "dealt/test.pt")
PY
ordered=(--batch-size 32 --epochs 2 --no-shuffle --seed 3 "${quiet[@]}")
expect_ok sharded "$MPIRUN" -np 2 "$DPTRAIN" train --data shards "${ordered[@]}" --out sharded.pt
grep -q "4 shards, 2000 samples" sharded.log || { cat sharded.log; fail "the shards were not detected and counted"; }
expect_ok dealt "$MPIRUN" -np 2 "$DPTRAIN" train --data dealt "${ordered[@]}" --out dealt.pt
expect_equal_models dealt.pt sharded.pt "4 shards vs the same samples in one tensor file"
# eval and infer read every source; infer writes the outputs in the source's sample order.
expect_ok eval_shards "$MPIRUN" -np 2 "$DPTRAIN" eval --data shards --model sharded.pt
expect_ok infer_shards "$MPIRUN" -np 2 "$DPTRAIN" infer --data shards --model sharded.pt --out shards_logits.pt
expect_ok infer_dealt "$DPTRAIN" infer --data dealt --model sharded.pt --out dealt_logits.pt
"$DPTRAIN_PYTHON" -c "
import sys, torch
a, b = torch.load('shards_logits.pt'), torch.load('dealt_logits.pt')
sys.exit(0 if a.shape == (2000, 10) and torch.allclose(a, b, atol=1e-6) else f'FAIL: infer outputs differ {a.shape} {b.shape}')"

# (c) a per-sample transform written in PyTorch, random and seeded per sample: 0, 1 and 3 workers.
# examples/augment.py (a flip and noise drawn from the sample's seed), the one docs/cli.md uses.
"$DPTRAIN_PYTHON" "$DPTRAIN_SOURCE_DIR/examples/augment.py" --out jitter.pt >/dev/null
for w in 0 1 3; do
  expect_ok "transform_w$w" "$MPIRUN" -np 2 "$DPTRAIN" train --data tensors "${small[@]}" --transform jitter.pt \
    --workers "$w" --out "transform_w$w.pt"
done
expect_equal_models transform_w0.pt transform_w1.pt "--transform, 0 vs 1 workers"
expect_equal_models transform_w0.pt transform_w3.pt "--transform, 0 vs 3 workers"
"$DPTRAIN_PYTHON" -c "
import sys, torch
a, b = torch.jit.load('transform_w0.pt').state_dict(), torch.jit.load('tensors.pt').state_dict()
sys.exit(0 if any(not torch.equal(a[k], b[k]) for k in a) else 'FAIL: --transform changed nothing')"

# (d) killed mid-epoch and resumed on shards == uninterrupted.
make --format shards --shards 4 --out kshards --limit 1280
resume=(train --data kshards --batch-size 16 --epochs 3 --seed 5 "${quiet[@]}" --no-eval --checkpoint-every 7
        --keep-checkpoints 2)
expect_ok full "$MPIRUN" -np 2 "$DPTRAIN" "${resume[@]}" --out full.pt
setsid "$MPIRUN" -np 2 "$DPTRAIN" "${resume[@]}" --checkpoint-dir ckpt --out killed.pt >killed.log 2>&1 &
job=$!
for _ in $(seq 1 600); do
  [ -e ckpt/checkpoint-0000000049.pt ] && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.05
done
kill -KILL -- "-$job" 2>/dev/null || true
# The ranks too (mpirun puts them in process groups of their own; alive, they would still hold the
# checkpoint directory's lock).
pkill -KILL -f -- "--checkpoint-dir ckpt --out killed.pt" 2>/dev/null || true
wait "$job" 2>/dev/null || true
[ -e killed.pt ] && { cat killed.log; fail "the sharded job finished before it could be killed"; }
expect_ok resumed "$MPIRUN" -np 2 "$DPTRAIN" "${resume[@]}" --checkpoint-dir ckpt --resume --out resumed.pt
grep -Eq "resumed from .*checkpoint-[0-9]+\.pt" resumed.log || { cat resumed.log; fail "the rerun did not resume"; }
expect_equal_models full.pt resumed.pt "shards: killed mid-epoch + resumed vs uninterrupted"

# (e) bad files, one clear error each.
make --format imagefolder --out images --limit 200
png=$(ls images/train/3_dress/*.png | head -1)
head -c 100 "$png" > truncated.png && mv truncated.png "$png"
expect_error truncated_png 1 "$png: truncated or corrupt PNG" "$DPTRAIN" train --data images --epochs 1 "${quiet[@]}"
"$DPTRAIN_PYTHON" -c "
import torch; torch.save({'inputs': torch.zeros(4, 1, 2, 2)}, 'shards/train-00001.pt')"
expect_error shard_without_targets 1 "shards/train-00001.pt: no \"targets\" entry" \
  "$MPIRUN" -np 2 "$DPTRAIN" train --data shards --epochs 1 "${quiet[@]}"
rm -f images/train/5_sandal/*
expect_error empty_class 1 "images/train/5_sandal: a class folder without images" \
  "$DPTRAIN" train --data images --epochs 1 "${quiet[@]}"
mkdir -p nothing
expect_error no_data 2 "--data nothing: no training data found" "$DPTRAIN" train --data nothing "${quiet[@]}"
