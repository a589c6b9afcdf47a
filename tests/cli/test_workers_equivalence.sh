# The preprocessing pool feeds the trainer without changing what it computes: the same run with
# 0, 1 and 3 workers (with augmentation, which draws per-sample random numbers on the workers)
# ends with bitwise equal parameters, under mpirun -np 2. And augmentation does change them, so
# the comparison is not between runs that ignore it.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
common=(train --model mlp --data "$DATA" --limit-samples 512 --batch-size 32 --epochs 2 --optimizer sgd
        --lr 0.05 --seed 9 --metrics "" --no-eval --log-every 0)

expect_ok plain "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --out plain.pt
for workers in 0 1 3; do
  expect_ok "augment_w$workers" "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --augment --workers "$workers" \
    --out "augment_w$workers.pt"
done
expect_error bad_workers 2 "--workers must be >= 0" "$DPTRAIN" "${common[@]}" --workers -1

expect_equal_models augment_w0.pt augment_w1.pt "1 worker vs inline preprocessing"
expect_equal_models augment_w0.pt augment_w3.pt "3 workers vs inline preprocessing"
if expect_equal_models plain.pt augment_w0.pt "control" >/dev/null 2>&1; then
  fail "--augment did not change the training"
fi
echo "ok: --augment changes the parameters"
