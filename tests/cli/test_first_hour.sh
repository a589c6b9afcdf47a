# What a newcomer meets in the first hour (issue 33), each checked where it could go wrong:
#  (a) image preprocessing travels with the model: eval/infer apply the training's --image-size,
#      --mean and --std (the same accuracy as passing them), a conflicting value is one error line;
#  (b) infer on an image folder says which file each row is (OUT.files.txt);
#  (c) --resume latest on a checkpoint directory without checkpoints starts from the beginning,
#      a missing checkpoint file stays an error;
#  (d) output locations are created: --tensorboard, --checkpoint-dir, --metrics in new directories.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
LIMIT=${DPTRAIN_CLI_TIMEOUT:-300}
"$DPTRAIN_PYTHON" "$DPTRAIN_SOURCE_DIR/scripts/data/make_datasets.py" --idx "$DATA" --format imagefolder \
  --limit 600 --out images >/dev/null
pre=(--image-size 24 --mean 0.3 --std 0.35)
quick=(--model mlp --epochs 1 --batch-size 32 --metrics "" --no-eval)

# --- (a) preprocessing saved with the model ------------------------------------------------------
expect_ok train_images "$DPTRAIN" train --data images "${quick[@]}" "${pre[@]}" --out model.pt
"$DPTRAIN_PYTHON" -c "
import torch
m = torch.jit.load('model.pt')
assert m.dptrain_image_size == 24 and list(m.dptrain_image_mean) == [0.3] and list(m.dptrain_image_std) == [0.35], \
    (m.dptrain_image_size, m.dptrain_image_mean, m.dptrain_image_std)
print('ok: model.pt holds --image-size 24 --mean 0.3 --std 0.35')"
expect_ok eval_saved "$MPIRUN" -np 2 "$DPTRAIN" eval --data images --model model.pt
expect_ok eval_given "$MPIRUN" -np 2 "$DPTRAIN" eval --data images --model model.pt "${pre[@]}"
saved=$(grep -o "test loss .*" eval_saved.log | sed 's/ (.*//')
given=$(grep -o "test loss .*" eval_given.log | sed 's/ (.*//')
[ -n "$saved" ] && [ "$saved" = "$given" ] || { cat eval_saved.log eval_given.log; fail "eval without the options: '$saved', with: '$given'"; }
grep -q "image preprocessing saved with model.pt: --image-size 24" eval_saved.log || { cat eval_saved.log; fail "eval did not say it used the model's preprocessing"; }
echo "ok: eval with the model's preprocessing = eval with the options given: $saved"
expect_error eval_conflict 2 "--mean 0.5 differs from the model's \(model.pt was trained with --image-size 24 --mean '0.3'" \
  "$DPTRAIN" eval --data images --model model.pt --mean 0.5

# --- (b) infer names the file of each row ---------------------------------------------------------
mkdir -p out
expect_ok infer "$MPIRUN" -np 2 "$DPTRAIN" infer --data images --model model.pt --out out/logits.pt
grep -q "row i is the i-th file of out/logits.files.txt" infer.log || { cat infer.log; fail "infer did not name the file list"; }
"$DPTRAIN_PYTHON" -c "
import os, torch
rows = torch.load('out/logits.pt').shape[0]
files = open('out/logits.files.txt').read().splitlines()
assert len(files) == rows, (len(files), rows)
assert all(os.path.isfile(os.path.join('images', f)) for f in files), files[:3]
assert files == sorted(files), 'rows follow the folder order'
print(f'ok: {rows} rows, out/logits.files.txt names each ({files[0]} ...)')"

# --- (c) --resume latest on an empty checkpoint directory -----------------------------------------
expect_ok resume_fresh "$DPTRAIN" train --data images "${quick[@]}" --checkpoint-dir ckpt --resume latest
grep -q -- "--resume latest: no checkpoint in ckpt yet: starting from the beginning" resume_fresh.log ||
  { cat resume_fresh.log; fail "a fresh start under --resume latest was not announced"; }
ls ckpt/checkpoint-*.pt >/dev/null || fail "the fresh run wrote no checkpoint"
expect_ok resume_again "$DPTRAIN" train --data images "${quick[@]}" --epochs 2 --checkpoint-dir ckpt --resume latest
grep -q "resum" resume_again.log || { cat resume_again.log; fail "the second launch did not resume"; }
expect_error resume_missing_file 2 "--resume: checkpoint file nope.pt does not exist" \
  "$DPTRAIN" train --data images "${quick[@]}" --resume nope.pt
echo "ok: --resume latest starts fresh on an empty directory, then resumes"

# --- (d) output directories are created -----------------------------------------------------------
expect_ok outputs "$DPTRAIN" train --data images --model mlp --epochs 1 --batch-size 32 --no-eval \
  --tensorboard runs/a/b --checkpoint-dir deep/c/d --metrics logs/e/m.jsonl
[ -d runs/a/b ] && ls deep/c/d/checkpoint-*.pt >/dev/null && [ -s logs/e/m.jsonl ] ||
  { cat outputs.log; ls -R . | head -40; fail "output directories were not created"; }
echo "ok: --tensorboard runs/a/b, --checkpoint-dir deep/c/d and --metrics logs/e/m.jsonl created"

# --- (e) dpt-mpirun keeps the view to dptrain's own line -------------------------------------------
expect_error banner_usage 2 "Could not convert: --epochs = zero" \
  "$MPIRUN" -np 2 "$DPTRAIN" train --data images --epochs zero
! grep -q "Primary job\|mpirun detected\|mpirun noticed" banner_usage.log || { cat banner_usage.log; fail "mpirun's banner after a usage error"; }
# (SIGSEGV, a crash: 137, SIGKILL's code, is also what `run` reads as its own time limit)
run banner_kill "$MPIRUN" -np 2 bash -c '[ "$OMPI_COMM_WORLD_RANK" = 1 ] && kill -SEGV $$; sleep 2'
[ "$rc" = 139 ] && grep -q "dpt-mpirun: a rank ended on signal 11 (SIGSEGV)" banner_kill.log ||
  { cat banner_kill.log; fail "a rank killed by a signal is named by dpt-mpirun (exit $rc)"; }
echo "ok: no mpirun banner after a usage error; a killed rank is named: $(grep -m1 'dpt-mpirun:' banner_kill.log)"

# --- (f) label smoothing and top-k accuracy ------------------------------------------------------
expect_ok topk "$DPTRAIN" train --data images --model mlp --epochs 1 --batch-size 32 --label-smoothing 0.1 --top-k 3 \
  --metrics topk.jsonl
grep -Eq "test accuracy [0-9.]+%, top-3 accuracy [0-9.]+%" topk.log || { cat topk.log; fail "no top-3 accuracy"; }
"$DPTRAIN_PYTHON" -c "
import json
last = [json.loads(l) for l in open('topk.jsonl') if 'test_top3_accuracy' in l][-1]
assert last['test_accuracy'] <= last['test_top3_accuracy'] <= 1, last
print('ok: top-3 accuracy', last['test_top3_accuracy'], '>= accuracy', last['test_accuracy'], '(fractions)')"
expect_error smoothing_mse 2 "--label-smoothing applies to --loss cross_entropy, not mse" \
  "$DPTRAIN" train --data images --model mlp --loss mse --label-smoothing 0.1

# --- (g) --eval-every, early stopping, the final checkpoint written once --------------------------
expect_ok eval_every "$DPTRAIN" train --data images --model mlp --epochs 1 --batch-size 32 --eval-every 5 \
  --metrics every.jsonl --checkpoint-dir once
"$DPTRAIN_PYTHON" -c "
import json
records = [json.loads(l) for l in open('every.jsonl')]
evals = [r['step'] for r in records if r.get('type') == 'eval']
epochs = [r['step'] for r in records if r.get('type') == 'epoch' and 'test_loss' in r]
assert evals == [5, 10, 15] and epochs == [18], (evals, epochs)
print('ok: --eval-every 5 evaluated at steps', evals, 'and the epoch at', epochs)"
[ "$(grep -c "checkpoint .* written" eval_every.log)" = 1 ] || { cat eval_every.log; fail "the final checkpoint is written once"; }
expect_ok early "$DPTRAIN" train --data images --model mlp --epochs 5 --batch-size 32 --lr 1e-12 --eval-every 1 \
  --early-stopping-patience 2 --early-stopping-metric test_accuracy --metrics ""
grep -q "early stopping after the evaluation of step 3 at step 3: test_accuracy did not improve for 2 evaluation(s)" early.log &&
  grep -q "dptrain train: 3 steps, .* (early stopping)" early.log || { cat early.log; fail "early stopping at step 3"; }
echo "ok: $(grep -m1 'early stopping after' early.log | sed 's/.*\] //')"
expect_error early_metric 2 "--early-stopping-metric val_f1: the evaluation does not report it \(it reports test_loss, test_accuracy\)" \
  "$DPTRAIN" train --data images --model mlp --epochs 1 --eval-every 2 --early-stopping-patience 1 --early-stopping-metric val_f1
