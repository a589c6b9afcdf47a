"""Checkpoints PyTorch opens and writes, for an MLP trained with Adam by `mpirun -np 2 dptrain train`
on the same batches in the same order as a PyTorch loop (--no-shuffle; rank r of a global batch
takes its samples r, r+2, ...):

  (a) dptrain's checkpoint after epoch 1 opens with torch.load (weights_only, the default); a
      PyTorch script resumes from it (model.load_state_dict, torch.optim.Adam.load_state_dict) and
      its epoch 2 equals dptrain's own resume (1e-5);
  (b) a checkpoint written by a PyTorch script after its epoch 1 with the same keys resumes in
      dptrain, whose epoch 2 equals the script's (1e-5);
  (c) a file without "optimizer", and one with another optimizer's state, are one clear error each.
"""
import os
import shutil

import torch
import torch.nn as nn
import torch.nn.functional as F

from cli_helpers import check, load_state, run

B, W, LR, STEPS = 16, 2, 0.01, 14
N_TRAIN = STEPS * W * B

# Four Gaussian clusters in 20 dimensions, as tensor files (train.pt / test.pt).
torch.manual_seed(0)
centers = torch.randn(4, 20) * 2
targets = torch.randint(0, 4, (N_TRAIN + 64,))
inputs = centers[targets] + torch.randn(N_TRAIN + 64, 20)
os.makedirs("data", exist_ok=True)
torch.save({"inputs": inputs[:N_TRAIN], "targets": targets[:N_TRAIN]}, "data/train.pt")
torch.save({"inputs": inputs[N_TRAIN:], "targets": targets[N_TRAIN:]}, "data/test.pt")


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(20, 32)
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x)))


torch.manual_seed(1)
torch.jit.script(MLP()).save("mlp.pt")

COMMON = ["train", "--data", "data", "--model", "mlp.pt", "--optimizer", "adam", "--lr", str(LR),
          "--lr-schedule", "constant", "--no-shuffle", "--batch-size", str(B), "--metrics", "", "--no-eval",
          "--log-every", "0"]


def pytorch_epoch(model, optimizer):
    """One epoch of PyTorch's training on the same global batches: the mean over ranks of each
    rank's loss."""
    for s in range(STEPS):
        x, y = inputs[s * W * B:(s + 1) * W * B], targets[s * W * B:(s + 1) * W * B]
        optimizer.zero_grad()
        loss = sum(F.cross_entropy(model(x[r::W]), y[r::W]) for r in range(W)) / W
        loss.backward()
        optimizer.step()


def expect_equal(ours, theirs, what, tolerance=1e-5):
    worst = max(((ours[k] - theirs[k]).abs().max() / theirs[k].abs().max().clamp_min(1)).item() for k in theirs)
    check(worst < tolerance, f"{what} (max relative difference {worst:.1e})")


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- (a) dptrain writes, PyTorch continues -------------------------------------------------------------
run(COMMON + ["--epochs", "1", "--checkpoint-dir", "ckpt", "--out", "epoch1.pt"], np_=W)
path = f"ckpt/checkpoint-{STEPS:010d}.pt"
shutil.copy(path, "epoch1_checkpoint.pt")
ckpt = torch.load("epoch1_checkpoint.pt")  # weights_only=True: plain dicts, lists, tensors
check(set(ckpt) >= {"model", "optimizer", "epoch", "step", "sampler", "scheduler", "rng", "dptrain"},
      f"torch.load opens {path}; keys {sorted(ckpt)}")
check(ckpt["epoch"] == 1 and ckpt["step"] == STEPS and ckpt["sampler"]["batch_in_epoch"] == 0,
      f"epoch {ckpt['epoch']}, step {ckpt['step']}: after the first epoch")
check(len(ckpt["rng"]["cpu"]) == W, "one CPU generator state per rank")
expect_equal(ckpt["model"], load_state("epoch1.pt"), "its model is the one dptrain saved after epoch 1")

model = torch.jit.load("mlp.pt")
model.load_state_dict(ckpt["model"])
optimizer = torch.optim.Adam(model.parameters(), lr=LR)
optimizer.load_state_dict(ckpt["optimizer"])
check(all(int(s["step"]) == STEPS for s in optimizer.state.values()), "Adam's state (step, moments) loaded")
pytorch_epoch(model, optimizer)

run(COMMON + ["--epochs", "2", "--checkpoint-dir", "ckpt", "--resume", "--out", "resumed.pt"], np_=W)
expect_equal(load_state("resumed.pt"), state_of(model),
             "PyTorch resumed from dptrain's checkpoint equals dptrain's own resume")

# --- (b) PyTorch writes, dptrain continues -------------------------------------------------------------
model = torch.jit.load("mlp.pt")
optimizer = torch.optim.Adam(model.parameters(), lr=LR)
pytorch_epoch(model, optimizer)
expect_equal(state_of(model), load_state("epoch1.pt"), "PyTorch's epoch 1 equals dptrain's")
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1, "step": STEPS},
           "pytorch_checkpoint.pt")
out = run(COMMON + ["--epochs", "2", "--resume", "pytorch_checkpoint.pt", "--out", "from_pytorch.pt"], np_=W)
check("has no 'sampler'" in out, "the missing sampler position is said")
pytorch_epoch(model, optimizer)
expect_equal(load_state("from_pytorch.pt"), state_of(model),
             "dptrain resumed from PyTorch's checkpoint equals PyTorch's own epoch 2")

# --- (c) files that cannot continue the run ---------------------------------------------------------------
torch.save({"model": model.state_dict(), "epoch": 1, "step": STEPS}, "no_optimizer.pt")
out = run(COMMON + ["--epochs", "2", "--resume", "no_optimizer.pt"], np_=W, expect=1)
check("checkpoint no_optimizer.pt has no 'optimizer'" in out, "a file without 'optimizer': one clear error")
sgd = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
pytorch_epoch(model, sgd)
torch.save({"model": model.state_dict(), "optimizer": sgd.state_dict(), "epoch": 1, "step": STEPS}, "sgd.pt")
out = run(COMMON + ["--epochs", "2", "--resume", "sgd.pt"], np_=W, expect=1)
check("this run's optimizer is adam: pass --optimizer sgd" in out, "another optimizer's state: one clear error")
