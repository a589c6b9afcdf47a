# Bad option values and paths given to `dptrain`: each case gives one clear error line naming what is wrong and a non-zero
# exit code (2 for usage errors found before MPI starts, 1 otherwise), never an abort or a hang.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
small=(--data "$DATA" --limit-samples 128 --batch-size 16 --max-steps 2 --metrics "")

# Option values, checked before MPI starts.
expect_error batch_zero 2 "--batch-size must be > 0, got 0" "$DPTRAIN" train "${small[@]}" --batch-size 0
expect_error negative_lr 2 "--lr must be a positive number, got -0.1" "$DPTRAIN" train "${small[@]}" --lr -0.1
expect_error unknown_optimizer 2 "unknown optimizer 'rmsprop'" "$DPTRAIN" train "${small[@]}" --optimizer rmsprop
expect_error unknown_loss 2 "unknown loss 'hinge'" "$DPTRAIN" train "${small[@]}" --loss hinge
expect_error bad_epochs 2 "--epochs must be > 0" "$DPTRAIN" train "${small[@]}" --epochs 0
expect_error bucket_cap_zero 2 "--bucket-cap must be a size in MB > 0 or auto, got '0'" "$DPTRAIN" train "${small[@]}" --bucket-cap 0
expect_error bucket_cap_word 2 "--bucket-cap must be a size in MB > 0 or auto, got 'big'" "$DPTRAIN" train "${small[@]}" --bucket-cap big
expect_error overlap_clip 2 "--overlap-optimizer steps each bucket's parameters as soon as it is reduced, so it cannot be combined with --clip-grad-norm" \
  "$DPTRAIN" train "${small[@]}" --overlap-optimizer --clip-grad-norm 1
expect_error not_a_number 2 "--lr" "$DPTRAIN" train "${small[@]}" --lr fast
expect_error unknown_flag 2 "--frobnicate" "$DPTRAIN" train --frobnicate
expect_error no_subcommand 2 "subcommand" "$DPTRAIN"
expect_error missing_data 2 "--data /nonexistent/fmnist: no such directory" "$DPTRAIN" train "${small[@]}" --data /nonexistent/fmnist
expect_error unwritable_out 2 "--out /nonexistent/dir/model.pt: its directory does not exist" \
  "$DPTRAIN" train "${small[@]}" --out /nonexistent/dir/model.pt
expect_error unwritable_infer_out 2 "--out /nonexistent/p.pt" "$DPTRAIN" infer --model cnn "${small[@]:0:4}" --out /nonexistent/p.pt
expect_error missing_model 2 "--model nothere.pt: neither a built-in model" "$DPTRAIN" eval --model nothere.pt --data "$DATA"
expect_error amp_on_cpu 2 "--amp .* needs a CUDA device" "$DPTRAIN" train "${small[@]}" --amp --device cpu
expect_error decay_selects_nothing 2 "--weight-decay-exclude biases: selects no parameter" \
  "$DPTRAIN" train "${small[@]}" --model mlp --weight-decay 0.1 --weight-decay-exclude bias,biases
expect_error decay_groups_with_zero 2 "--weight-decay-exclude and --zero 1" \
  "$DPTRAIN" train "${small[@]}" --model mlp --weight-decay-exclude bias --zero 1
# The same under mpirun -np 2: every rank stops, the job exits non-zero, no hang.
expect_error batch_zero_np2 2 "--batch-size must be > 0" "$MPIRUN" -np 2 "$DPTRAIN" train "${small[@]}" --batch-size 0

