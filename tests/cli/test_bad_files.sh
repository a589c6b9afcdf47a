# Bad model and data files given to `dptrain`: one clear error line naming the file, a non-zero
# exit code, no abort or hang (also under mpirun -np 2, where only rank 0 reads the model file).
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
small=(--data "$DATA" --limit-samples 128 --batch-size 16 --max-steps 2 --metrics "")

# Model files (read by rank 0 only; the error reaches every rank).
printf 'this is not a model' > junk.pt
expect_error junk_model 1 "junk.pt" "$DPTRAIN" eval --model junk.pt --data "$DATA"
expect_error junk_model_np2 1 "junk.pt" "$MPIRUN" -np 2 "$DPTRAIN" train --model junk.pt "${small[@]}"
cat > make_models.py <<'PY'
import torch, torch.nn as nn
class NoForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
    @torch.jit.export
    def score(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w.sum()
torch.jit.script(NoForward()).save("noforward.pt")
class ThreeClasses(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 3)
    def forward(self, x):
        return self.fc(x.flatten(1))
torch.jit.script(ThreeClasses()).save("three.pt")
class WrongInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(100, 10)
    def forward(self, x):
        return self.fc(x.flatten(1))
torch.jit.script(WrongInput()).save("wronginput.pt")
class NaNLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)
    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")
torch.jit.script(NaNLoss()).save("nan.pt")
PY
"$DPTRAIN_PYTHON" make_models.py
expect_error no_forward 1 "noforward.pt is a TorchScript module without a forward method" \
  "$DPTRAIN" train --model noforward.pt "${small[@]}"
expect_error incompatible_output 1 "model output of shape \[2, 3\] .* incompatible with the labels" \
  "$DPTRAIN" train --model three.pt "${small[@]}"
expect_error wrong_input 1 "the model cannot take inputs of shape \[2, 1, 28, 28\]" \
  "$DPTRAIN" eval --model wronginput.pt --data "$DATA" --limit-samples 64

# NaN/Inf loss: an error by default (all ranks together), skipped on request.
expect_error nan_loss_np2 1 "the loss is NaN or Inf at step 1" "$MPIRUN" -np 2 "$DPTRAIN" train --model nan.pt "${small[@]}"
# The error takes the job down: each rank logs its last collectives first (the flight recorder).
grep -Eq "mpi rank [01]/2: flight recorder, the last [0-9]+ of [0-9]+ collectives" nan_loss_np2.log ||
  { cat nan_loss_np2.log; fail "no flight recorder dump before the job was taken down"; }
echo "ok: the flight recorder is in the log when an error ends a multi-rank job"
expect_ok nan_skip "$MPIRUN" -np 2 "$DPTRAIN" train --model nan.pt "${small[@]}" --skip-nonfinite-loss --no-eval
grep -q "non-finite loss, step skipped" nan_skip.log || { cat nan_skip.log; fail "skipped steps not reported"; }
echo "ok: --skip-nonfinite-loss skips the steps and says so"

# Data files: truncated IDX and a wrong magic number, named by file.
mkdir -p truncated badmagic
"$DPTRAIN_PYTHON" - "$DATA" <<'PY'
import gzip, sys
src = sys.argv[1]
for split in ("train", "t10k"):
    for kind in ("images-idx3", "labels-idx1"):
        data = gzip.open(f"{src}/{split}-{kind}-ubyte.gz").read()
        short = data[: len(data) // 2] if kind.startswith("images") else data
        open(f"truncated/{split}-{kind}-ubyte", "wb").write(short)
        bad = bytearray(data); bad[2:4] = b"\x0d\x07"
        open(f"badmagic/{split}-{kind}-ubyte", "wb").write(bytes(bad))
PY
expect_error truncated_idx 1 "truncated/train-images-idx3-ubyte" "$DPTRAIN" train --data truncated --max-steps 1 --metrics ""
expect_error bad_magic 1 "badmagic/train-.*-ubyte" "$DPTRAIN" train --data badmagic --max-steps 1 --metrics ""
