# With --no-shuffle, 2 ranks at --batch-size B and 1 process at --batch-size 2B take identical SGD
# steps (DDP averages the per-rank mean-loss gradients), so their final models agree. The model has
# no dropout or BatchNorm (the built-in mlp), whose per-rank randomness/statistics would differ.
# --bucket-cap auto at 2 ranks gives bitwise the same model as the 25 MB default (a cap changes
# which gradients share a collective, not what each element sums), and so does --overlap-optimizer
# (the optimizer stepped inside backward, bucket by bucket).
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
common=(train --model mlp --data "$DATA" --limit-samples 512 --no-shuffle --optimizer sgd --lr 0.05
        --momentum 0.9 --max-steps 12 --seed 5 --metrics "" --no-eval)
expect_ok np2 "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --batch-size 8 --out np2.pt
expect_ok np1 "$MPIRUN" -np 1 "$DPTRAIN" "${common[@]}" --batch-size 16 --out np1.pt
# --bucket-cap auto: buckets rebuilt with the chosen cap before step 3; the steps are the same.
expect_ok auto "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --batch-size 8 --bucket-cap auto --out auto.pt
grep -q "DDP auto bucket cap" auto.log || { cat auto.log; fail "--bucket-cap auto logged no choice"; }
expect_ok overlap "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --batch-size 8 --overlap-optimizer --out overlap.pt
# A shuffled run as a control: the comparison below must be able to fail.
expect_ok shuffled "$DPTRAIN" "${common[@]/--no-shuffle/--seed=6}" --batch-size 16 --out shuffled.pt
"$DPTRAIN_PYTHON" - <<'PY'
import sys, torch
a = torch.jit.load("np2.pt").state_dict()
b = torch.jit.load("np1.pt").state_dict()
c = torch.jit.load("shuffled.pt").state_dict()
auto = torch.jit.load("auto.pt").state_dict()
assert all(torch.equal(auto[k], a[k]) for k in a), "--bucket-cap auto changed the training"
overlap = torch.jit.load("overlap.pt").state_dict()
assert all(torch.equal(overlap[k], a[k]) for k in a), "--overlap-optimizer changed the training"
worst = max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1)).item() for k in a)
control = max(((c[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1)).item() for k in a)
print(f"max relative difference np2 vs np1: {worst:.3g}; shuffled control: {control:.3g}")
if not worst < 1e-5:
    sys.exit("FAIL: 2 ranks x batch 8 and 1 process x batch 16 ended with different models")
if not control > 1e-3:
    sys.exit("FAIL: the control run did not differ; the comparison cannot fail")
print("ok: np 2 x batch 8 == np 1 x batch 16 (--no-shuffle); --bucket-cap auto and --overlap-optimizer bitwise equal")
PY
