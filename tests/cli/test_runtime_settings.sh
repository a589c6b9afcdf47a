# Rank 0 logs what the runtime resolved from the options and the DPTRAIN_* variables (issue 31):
# each value in the line is the one given, not a default.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
small=(--data "$DATA" --limit-samples 64 --batch-size 16 --max-steps 1 --metrics "" --no-eval --model mlp)

expect_ok settings env DPTRAIN_FLIGHT_RECORDER=7 DPTRAIN_DEBUG=DETAIL \
  "$MPIRUN" -np 2 "$DPTRAIN" train "${small[@]}" --timeout 45 --device cpu
line=$(grep -m1 "dptrain runtime:" settings.log) || { cat settings.log; fail "no 'dptrain runtime:' line"; }
for expected in "backend mpi" "device cpu" "2 rank(s) (mpi launch)" "timeout 45 s" "call checks on" \
                "flight recorder 7" "MPI thread level multiple"; do
  [[ "$line" == *"$expected"* ]] || fail "the settings line lacks '$expected': $line"
done
[ "$(grep -c "dptrain runtime:" settings.log)" = 1 ] || { cat settings.log; fail "the settings line is logged by rank 0 only"; }
echo "ok: $line"

expect_ok settings_store env -u OMPI_COMM_WORLD_RANK RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 \
  "$DPTRAIN" train "${small[@]}" --backend store --device cpu
grep -q "dptrain runtime: backend store, device cpu, 1 rank(s) (torchrun launch)" settings_store.log ||
  { cat settings_store.log; fail "torchrun-style launch: store backend in the settings line"; }
echo "ok: $(grep -m1 "dptrain runtime:" settings_store.log)"
