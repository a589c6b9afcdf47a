"""Any model and any task through `mpirun -np 2 dptrain train`, each checked against PyTorch's own
training of the same scripted model on the same batches in the same order (SGD with momentum,
constant learning rate, no shuffling; rank r of a global batch takes its samples r, r+2, ...):

  (a) regression on scikit-learn's diabetes data as tensor files with --loss mse (1e-5);
  (b) a model with training_step / validation_step: equal to PyTorch calling the same methods, the
      validation metrics in the log and the metrics file;
  (c) a model calling torchvision's deform_conv2d trains with --load-ops (Python's library, then
      torchvision's _C.so), and without them gets the error naming the operator;
  (d) a custom operator with its own backward (tests/cli/custom_op/scaled_tanh.cpp), built here,
      trains through --load-ops equal to PyTorch with the same library.
"""
import json
import os
import subprocess
import sysconfig
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from cli_helpers import DATA, check, load_state, read_idx_images, run

B, W, LR = 16, 2, 0.05
SGD = ["--optimizer", "sgd", "--momentum", "0.9", "--lr", str(LR), "--lr-schedule", "constant", "--no-shuffle",
       "--batch-size", str(B), "--log-every", "4"]


def reference(model_path, inputs, targets, epochs, loss_of):
    """PyTorch's training: per global batch, the mean over the ranks of each rank's loss."""
    model = torch.jit.load(model_path)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    steps = inputs.shape[0] // (W * B)
    for _ in range(epochs):
        for s in range(steps):
            x, y = inputs[s * W * B:(s + 1) * W * B], targets[s * W * B:(s + 1) * W * B]
            optimizer.zero_grad()
            loss = sum(loss_of(model, x[r::W], y[r::W]) for r in range(W)) / W
            loss.backward()
            optimizer.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


def expect_equal(ours_path, theirs, what, tolerance=1e-5):
    ours = load_state(ours_path)
    initial = load_state(ours_path.replace("_trained", ""))
    moved = max((ours[k] - initial[k]).abs().max().item() for k in initial)
    check(moved > 1e-4, f"{what}: training moved the parameters (by up to {moved:.3f})")
    worst = max(((ours[k] - theirs[k]).abs().max() / theirs[k].abs().max().clamp_min(1)).item() for k in theirs)
    check(worst < tolerance, f"{what}: dptrain's parameters equal PyTorch's (max relative difference {worst:.1e})")


def save_split(directory, inputs, targets, test):
    os.makedirs(directory, exist_ok=True)
    torch.save({"inputs": inputs[:-test], "targets": targets[:-test]}, f"{directory}/train.pt")
    torch.save({"inputs": inputs[-test:], "targets": targets[-test:]}, f"{directory}/test.pt")
    return inputs[:-test], targets[:-test]


# --- (a) regression: diabetes (scikit-learn's bundled copy), --loss mse -------------------------
from sklearn.datasets import load_diabetes  # noqa: E402

X, y = load_diabetes(return_X_y=True)
X = torch.tensor(X, dtype=torch.float32)
y = torch.tensor(y, dtype=torch.float32).unsqueeze(1) / 100.0
train_x, train_y = save_split("diabetes", X, y, test=58)  # 384 = 12 global batches of 2 x 16


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(10, 16)
        self.out = nn.Linear(16, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


torch.manual_seed(1)
torch.jit.script(Regressor()).save("regressor.pt")
out = run(["train", "--data", "diabetes", "--model", "regressor.pt", "--loss", "mse", "--epochs", "3",
           "--out", "regressor_trained.pt", "--metrics", "regression.jsonl"] + SGD, np_=W)
check("test loss" in out and "accuracy" not in out, "regression: the test loss is reported, no accuracy")
expect_equal("regressor_trained.pt", reference("regressor.pt", train_x, train_y, 3,
                                               lambda m, a, b: F.mse_loss(m(a), b)), "regression (mse)")


# --- (b) training_step / validation_step ----------------------------------------------------------
class WithSteps(Regressor):
    @torch.jit.export
    def training_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = self.forward(inputs)
        return F.smooth_l1_loss(outputs, targets) + 0.01 * outputs.abs().mean()

    @torch.jit.export
    def validation_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs = self.forward(inputs)
        return {"loss": F.mse_loss(outputs, targets), "mae": (outputs - targets).abs().mean()}


torch.manual_seed(2)
torch.jit.script(WithSteps()).save("steps.pt")
out = run(["train", "--data", "diabetes", "--model", "steps.pt", "--epochs", "2", "--out", "steps_trained.pt",
           "--metrics", "steps.jsonl"] + SGD, np_=W)
expect_equal("steps_trained.pt", reference("steps.pt", train_x, train_y, 2,
                                           lambda m, a, b: m.training_step(a, b)), "training_step")
check("val mae" in out, "validation_step's metrics reach the log")
epochs = [json.loads(line) for line in open("steps.jsonl") if '"type":"epoch"' in line]
check(epochs and "val_mae" in epochs[-1] and "val_loss" in epochs[-1], "... and the metrics file (val_mae, val_loss)")
model = torch.jit.load("steps_trained.pt")
with torch.no_grad():
    mae = (model(X[-58:]) - y[-58:]).abs().mean().item()
check(abs(epochs[-1]["val_mae"] - mae) < 1e-5, f"val_mae {epochs[-1]['val_mae']:.6f} is the test split's ({mae:.6f})")


# --- (c) torchvision's deform_conv2d, through --load-ops ------------------------------------------
import torchvision  # noqa: E402


class Deformable(nn.Module):
    def __init__(self):
        super().__init__()
        self.offsets = nn.Conv2d(1, 18, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(4, 1, 3, 3) * 0.2)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        y = torchvision.ops.deform_conv2d(x, self.offsets(x), self.weight, padding=(1, 1))
        return self.fc(torch.flatten(F.relu(y), 1))


torch.manual_seed(3)
torch.jit.script(Deformable()).save("deformable.pt")
small = ["--data", DATA, "--model", "deformable.pt", "--limit-samples", "128", "--epochs", "1", "--no-eval",
         "--metrics", ""] + SGD
out = run(["train"] + small, np_=W, expect=1)
check("calls the operator torchvision::deform_conv2d, which no loaded library registers" in out and "--load-ops" in out,
      "without --load-ops: one error naming the operator and the option")
libpython = os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME"))
vision_ops = os.path.join(os.path.dirname(torchvision.__file__), "_C.so")
out = run(["train"] + small + ["--load-ops", libpython, "--load-ops", vision_ops, "--out", "deformable_trained.pt"],
          np_=W)
images = read_idx_images(f"{DATA}/train-images-idx3-ubyte.gz", 128)
labels = torch.tensor(list(__import__("gzip").open(f"{DATA}/train-labels-idx1-ubyte.gz").read()[8:8 + 128]))
expect_equal("deformable_trained.pt", reference("deformable.pt", images, labels, 1,
                                                lambda m, a, b: F.cross_entropy(m(a), b)), "torchvision deform_conv2d")


# --- (d) a custom operator with its own backward ----------------------------------------------------
source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom_op", "scaled_tanh.cpp")
torch_dir = os.path.dirname(torch.__file__)
subprocess.run([os.environ.get("CXX", "c++"), "-shared", "-fPIC", "-O1", "-std=c++17", source,
                "-I", f"{torch_dir}/include", "-I", f"{torch_dir}/include/torch/csrc/api/include",
                "-L", f"{torch_dir}/lib", "-ltorch", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_dir}/lib",
                "-o", "libscaled_tanh.so"], check=True)
torch.ops.load_library("libscaled_tanh.so")


class WithCustomOp(Regressor):
    def forward(self, x):
        return self.out(torch.ops.dpt_test.scaled_tanh(self.hidden(x), 2.0))


torch.manual_seed(4)
torch.jit.script(WithCustomOp()).save("custom.pt")
out = run(["train", "--data", "diabetes", "--model", "custom.pt", "--loss", "mse", "--epochs", "2",
           "--load-ops", os.path.abspath("libscaled_tanh.so"), "--out", "custom_trained.pt", "--metrics", ""] + SGD,
          np_=W)
expect_equal("custom_trained.pt", reference("custom.pt", train_x, train_y, 2, lambda m, a, b: F.mse_loss(m(a), b)),
             "custom operator with its own backward")
