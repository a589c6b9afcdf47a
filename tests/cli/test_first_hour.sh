# What a newcomer meets in the first hour (issue 33), each checked where it could go wrong:
#  (a) image preprocessing travels with the model: eval/infer apply the training's --image-size,
#      --mean and --std (the same accuracy as passing them), a conflicting value is one error line;
#  (b) infer on an image folder says which file each row is (OUT.files.txt);
#  (c) --resume latest on a checkpoint directory without checkpoints starts from the beginning,
#      a missing checkpoint file stays an error;
#  (d) output locations are created: --tensorboard, --checkpoint-dir, --metrics in new directories.
#  (e) dpt-mpirun shows dptrain's line, not mpirun's banners; (f) label smoothing, top-k; (g) --eval-every,
#      early stopping, the final checkpoint written once; (h) last.pt, --keep-best, early stopping resumed.
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

# --- (h) last.pt, --keep-best, and early stopping's count carried over --resume -------------------
expect_ok best "$MPIRUN" -np 2 "$DPTRAIN" train --data images --model mlp --epochs 3 --batch-size 8 --optimizer sgd --lr 0.05 \
  --eval-every 4 --checkpoint-dir best_ck --keep-checkpoints 1 --keep-best test_accuracy --metrics best.jsonl
accuracy=$("$DPTRAIN_PYTHON" -c "
import json, os, torch
records = [json.loads(l) for l in open('best.jsonl')]
evaluated = [(r['test_accuracy'], -r['step']) for r in records if r.get('type') in ('eval', 'epoch') and 'test_accuracy' in r]
accuracy, step = max(evaluated)[0], -max(evaluated)[1]  # the first evaluation reaching the best
best = torch.load('best_ck/best.pt', weights_only=False)
assert best['step'] == step, ('best.pt is of step', best['step'], 'the best evaluation was at step', step, evaluated)
kept = best['callbacks']['keep_best']
assert kept['monitor'] == 'test_accuracy' and abs(kept['best_score'] - accuracy) < 1e-12 and kept['best_step'] == step, kept
numbered = [f for f in os.listdir('best_ck') if f.startswith('checkpoint-')]
last = torch.load('best_ck/last.pt', weights_only=False)
final = max(r['step'] for r in records)
assert numbered == ['checkpoint-%010d.pt' % final] and last['step'] == final, (numbered, last['step'], final)
assert open('best_ck/last.pt', 'rb').read() == open('best_ck/' + numbered[0], 'rb').read(), 'last.pt is the newest'
print('%.2f%%' % (100 * accuracy), step, final)")
read -r best_accuracy best_step final_step <<<"$accuracy"
expect_ok best_eval "$MPIRUN" -np 2 "$DPTRAIN" eval --data images --model mlp --weights best_ck/best.pt
grep -q "test accuracy $best_accuracy" best_eval.log || { cat best_eval.log; fail "best.pt evaluates to $best_accuracy"; }
echo "ok: best.pt is step $best_step (test accuracy $best_accuracy, evaluated again: the same), last.pt step $final_step"
expect_error best_no_dir 2 "--keep-best test_accuracy needs --checkpoint-dir" \
  "$DPTRAIN" train --data images --model mlp --epochs 1 --keep-best test_accuracy
expect_error best_no_eval 2 "--keep-best test_loss needs evaluations: this run has none" \
  "$DPTRAIN" train --data images --model mlp --epochs 1 --keep-best test_loss --checkpoint-dir x --no-eval
expect_error best_name 2 "--keep-best accuracy is not test_loss, test_accuracy" \
  "$DPTRAIN" train --data images --model mlp --epochs 1 --keep-best accuracy --checkpoint-dir x

# Early stopping stops a resumed run where the uninterrupted one stopped (its count is checkpointed).
patience=(--data images --model mlp --epochs 5 --batch-size 32 --lr 1e-12 --eval-every 1 --metrics ""
          --early-stopping-patience 3 --early-stopping-metric test_accuracy --checkpoint-dir patience)
expect_ok patience_first "$DPTRAIN" train "${patience[@]}" --stop-after-steps 2
expect_ok patience_resumed "$DPTRAIN" train "${patience[@]}" --resume latest
grep -q "dptrain train: 4 steps, .* (early stopping)" patience_resumed.log ||
  { cat patience_resumed.log; fail "the resumed run stops at step 4, as one run without the interruption"; }
echo "ok: $(grep -m1 'early stopping after' patience_resumed.log | sed 's/.*\] //')"
