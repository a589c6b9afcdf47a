# Resuming at another world size trains exactly what is left of the schedule: a run stopped at
# world size A and resumed at B ends after the steps it took at A plus the steps that the samples
# left (of the interrupted epoch, and of every later epoch) make at B's global batch. Smaller,
# same and larger world sizes; stopped inside an epoch and at an epoch's end; with ZeRO and without.
# The expected step counts are computed here from the data size and the batch, not taken from
# dptrain.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
samples=640 batch=16 epochs=3
common=(train --model mlp --data "$DATA" --limit-samples "$samples" --batch-size "$batch" --epochs "$epochs"
        --optimizer adam --lr 0.001 --metrics "" --no-eval --log-every 1000)

steps_per_epoch() { echo $((samples / ($1 * batch))); }  # the partial last batch is dropped

on() {  # on WORLD: the command line start for one process, or dpt-mpirun -np WORLD
  if [ "$1" = 1 ]; then echo "$DPTRAIN"; else echo "$MPIRUN -np $1 $DPTRAIN"; fi
}

# scenario NAME FROM TO STOP_AT(mid|end) [EXTRA ARGS...]
scenario() {
  local name=$1 from=$2 to=$3 where=$4; shift 4
  local first_steps
  if [ "$where" = mid ]; then first_steps=$(( $(steps_per_epoch "$from") / 2 + 1 )); else first_steps=$(steps_per_epoch "$from"); fi
  expect_ok "${name}_part1" $(on "$from") "${common[@]}" "$@" --checkpoint-dir "$name" --stop-after-steps "$first_steps"
  expect_ok "${name}_part2" $(on "$to") "${common[@]}" "$@" --checkpoint-dir "$name" --resume
  # What the first run consumed of epoch 1, and what is left of the schedule at the new size.
  local consumed=$((first_steps * from * batch)) global=$((to * batch))
  local expected=$((first_steps + (samples - consumed) / global + (epochs - 1) * $(steps_per_epoch "$to")))
  if [ "$where" = end ]; then expected=$((first_steps + (epochs - 1) * $(steps_per_epoch "$to"))); fi
  local got
  got=$(sed -n 's/.*dptrain train: \([0-9]*\) steps.*/\1/p' "${name}_part2.log")
  [ "$got" = "$expected" ] || { cat "${name}_part2.log"; fail "$name: resumed at world $to ended at step $got, expected $expected"; }
  echo "ok: $name: $from -> $to ranks, stopped at step $first_steps ($where of epoch 1), ended at step $got"
}

scenario larger_mid 1 2 mid
scenario larger_end 1 2 end
scenario smaller_mid 2 1 mid
scenario smaller_end 2 1 end
scenario same_mid 2 2 mid
scenario uneven_mid 2 3 mid
scenario zero1_larger_mid 2 3 mid --zero 1
scenario zero2_smaller_end 3 2 end --zero 2
scenario zero1_to_one_mid 2 1 mid --zero 1

# A finished run resumed asks for nothing more: it trains no step and says where it stands.
expect_ok finished $(on 1) "${common[@]}" --checkpoint-dir larger_end --resume
grep -q "dptrain train: $(( $(steps_per_epoch 1) + 2 * $(steps_per_epoch 2) )) steps" finished.log ||
  { cat finished.log; fail "a finished run resumed did not stay at its last step"; }
echo "ok: resuming a finished run trains nothing"
