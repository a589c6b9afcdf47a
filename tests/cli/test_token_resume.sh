# Token corpora keep the data contract of every other source (issue 34): a shuffled GPT run under
# mpirun -np 2 stopped in the middle of an epoch and resumed ends bitwise equal to the
# uninterrupted run (it continues at the exact window of the computed order), and 2 preprocessing
# workers give the same parameters as none. Another --seed is the control: the order matters.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
"$DPTRAIN_PYTHON" "$DPTRAIN_SOURCE_DIR/scripts/data/tokenize_text.py" /usr/share/common-licenses/GPL-3 --out gpl \
  > tokenize.log || { cat tokenize.log; fail "tokenize_text.py failed"; }
common=(train --model gpt --gpt-layers 1 --gpt-dim 32 --gpt-heads 2 --data gpl --context 64 --batch-size 4
        --epochs 2 --optimizer adamw --lr 3e-3 --seed 5 --metrics "" --no-eval --log-every 0)

expect_ok full "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --out full.pt
# (31634 - 1) / 64 = 494 windows / (2 ranks x 4) = 61 steps per epoch: stop inside epoch 2.
expect_ok part1 "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt --stop-after-steps 80
expect_ok part2 "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --checkpoint-dir ckpt --resume --out resumed.pt
grep -q "resumed from .*checkpoint-0000000080.pt" part2.log || { cat part2.log; fail "part2 did not resume from step 80"; }
expect_equal_models full.pt resumed.pt "token windows: interrupted at step 80 + resumed vs uninterrupted"

expect_ok workers "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --workers 2 --out workers.pt
expect_equal_models full.pt workers.pt "token windows: 2 workers vs inline preprocessing"

expect_ok control "$MPIRUN" -np 2 "$DPTRAIN" "${common[@]}" --seed 6 --out control.pt
if expect_equal_models full.pt control.pt "control" >/dev/null 2>&1; then
  fail "another --seed did not change the order of the windows"
fi
echo "ok: another --seed reads the windows in another order"
