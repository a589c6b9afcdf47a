"""Tuples of tensors as inputs and targets (tensor files torch.save'd in PyTorch) through
`mpirun -np 2 dptrain`, each checked against PyTorch's own training of the same scripted model on
the same batches in the same order (SGD with momentum, constant learning rate, no shuffling):

  (a) two inputs, {"inputs": (a, b), "targets": y}: forward(a, b) with --loss cross_entropy equals
      PyTorch (rank r of a global batch takes samples r, r+2, ...); `eval` reports PyTorch's test
      accuracy; `infer` writes model(a, b) in the samples' order; a --transform taking and
      returning the tuple is applied to each sample;
  (b) two targets, {"inputs": x, "targets": (label, value)}: the model's training_step and
      validation_step take the tuple; equal to PyTorch calling the same methods, the validation
      metrics logged;
  (c) the data of (a) as 2 shards: streamed by the sharded source (rank r reads shard r) and equal
      to PyTorch on the same per-rank samples;
  (d) errors, one line each: a built-in model on two inputs, --loss on two targets without a
      training_step, tuple parts of different lengths.
"""
import os
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from cli_helpers import check, load_state, run

B, W, LR, EPOCHS = 16, 2, 0.05, 2
SGD = ["--optimizer", "sgd", "--momentum", "0.9", "--lr", str(LR), "--lr-schedule", "constant", "--no-shuffle",
       "--batch-size", str(B), "--log-every", "4", "--epochs", str(EPOCHS)]
N_TRAIN, N_TEST = 6 * W * B, 40


def reference(model_path, rank_batches, loss_of):
    """PyTorch's training: per step, the mean over the ranks of each rank's loss on its batch."""
    model = torch.jit.load(model_path)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for _ in range(EPOCHS):
        for batches in rank_batches:
            optimizer.zero_grad()
            (sum(loss_of(model, x, y) for x, y in batches) / W).backward()
            optimizer.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


def interleaved(inputs, targets):
    """The default source's batches: global batch s, rank r takes its samples r, r+W, ..."""
    pick = lambda t, s, r: tuple(p[s * W * B:(s + 1) * W * B][r::W] for p in t) if isinstance(t, tuple) \
        else t[s * W * B:(s + 1) * W * B][r::W]
    return [[(pick(inputs, s, r), pick(targets, s, r)) for r in range(W)] for s in range(N_TRAIN // (W * B))]


def expect_equal(ours_path, theirs, what, tolerance=1e-5):
    ours, initial = load_state(ours_path), load_state(ours_path.replace("_trained", ""))
    moved = max((ours[k] - initial[k]).abs().max().item() for k in initial)
    check(moved > 1e-4, f"{what}: training moved the parameters (by up to {moved:.3f})")
    worst = max(((ours[k] - theirs[k]).abs().max() / theirs[k].abs().max().clamp_min(1)).item() for k in theirs)
    check(worst < tolerance, f"{what}: dptrain's parameters equal PyTorch's (max relative difference {worst:.1e})")


torch.manual_seed(0)
N = N_TRAIN + N_TEST
a, b = torch.randn(N, 8), torch.randn(N, 4)
label = (a[:, 0] + b[:, 1] > 0).long() + (a[:, 2] > 1).long()  # 3 classes
value = torch.stack([a[:, 1] - b[:, 0], a[:, 3] * 0.5], dim=1)


def save(directory, name, inputs, targets):
    os.makedirs(directory, exist_ok=True)
    torch.save({"inputs": inputs, "targets": targets}, f"{directory}/{name}.pt")


def rows(t, begin, end):
    return tuple(p[begin:end] for p in t) if isinstance(t, tuple) else t[begin:end]


# --- (a) two inputs --------------------------------------------------------------------------------
class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(4, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, a, b):
        return self.out(torch.tanh(self.a(a) + self.b(b)))


save("pair", "train", (a[:N_TRAIN], b[:N_TRAIN]), label[:N_TRAIN])
save("pair", "test", (a[N_TRAIN:], b[N_TRAIN:]), label[N_TRAIN:])
torch.manual_seed(1)
torch.jit.script(TwoInputs()).save("two_inputs.pt")
out = run(["train", "--data", "pair", "--model", "two_inputs.pt", "--out", "two_inputs_trained.pt",
           "--metrics", ""] + SGD, np_=W)
check("in pair (tensor files)" in out, "the tensor-file source is detected and named")
theirs = reference("two_inputs.pt", interleaved((a[:N_TRAIN], b[:N_TRAIN]), label[:N_TRAIN]),
                   lambda m, x, y: F.cross_entropy(m(*x), y))
expect_equal("two_inputs_trained.pt", theirs, "two inputs, forward(a, b)")

trained = torch.jit.load("two_inputs_trained.pt")
trained.eval()
with torch.no_grad():
    logits = trained(a[N_TRAIN:], b[N_TRAIN:])
accuracy = (logits.argmax(1) == label[N_TRAIN:]).float().mean().item()
out = run(["eval", "--data", "pair", "--model", "two_inputs_trained.pt"], np_=W)
check(f"{100 * accuracy:.2f}%" in out or f"{accuracy:.4f}" in out,
      f"eval on two inputs reports PyTorch's test accuracy ({100 * accuracy:.2f}%)")
run(["infer", "--data", "pair", "--model", "two_inputs_trained.pt", "--out", "logits.pt"], np_=W)
check(torch.allclose(torch.load("logits.pt"), logits, rtol=1e-5, atol=1e-6),
      "infer writes model(a, b) for every test sample, in order")



class ScaleSecond(nn.Module):
    def forward(self, x: Tuple[torch.Tensor, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return x[0], x[1] * 2.0


torch.jit.script(ScaleSecond()).save("scale_second.pt")
run(["train", "--data", "pair", "--model", "two_inputs.pt", "--transform", "scale_second.pt", "--no-eval",
     "--out", "two_inputs_transformed_trained.pt", "--metrics", ""] + SGD, np_=W)
os.link("two_inputs.pt", "two_inputs_transformed.pt")
theirs = reference("two_inputs.pt", interleaved((a[:N_TRAIN], 2.0 * b[:N_TRAIN]), label[:N_TRAIN]),
                   lambda m, x, y: F.cross_entropy(m(*x), y))
expect_equal("two_inputs_transformed_trained.pt", theirs, "two inputs through a --transform of the tuple")


# --- (b) two targets through training_step / validation_step ---------------------------------------
class TwoTargets(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.classes = nn.Linear(16, 3)
        self.values = nn.Linear(16, 2)

    def forward(self, x):
        return self.classes(torch.tanh(self.body(x)))

    @torch.jit.export
    def training_step(self, inputs: torch.Tensor, targets: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        hidden = torch.tanh(self.body(inputs))
        return F.cross_entropy(self.classes(hidden), targets[0]) + F.mse_loss(self.values(hidden), targets[1])

    @torch.jit.export
    def validation_step(self, inputs: torch.Tensor,
                        targets: Tuple[torch.Tensor, torch.Tensor]) -> Dict[str, torch.Tensor]:
        hidden = torch.tanh(self.body(inputs))
        correct = (self.classes(hidden).argmax(1) == targets[0]).float().mean()
        return {"accuracy": correct, "value_mse": F.mse_loss(self.values(hidden), targets[1])}


save("multi", "train", a[:N_TRAIN], (label[:N_TRAIN], value[:N_TRAIN]))
save("multi", "test", a[N_TRAIN:], (label[N_TRAIN:], value[N_TRAIN:]))
torch.manual_seed(2)
torch.jit.script(TwoTargets()).save("two_targets.pt")
out = run(["train", "--data", "multi", "--model", "two_targets.pt", "--out", "two_targets_trained.pt",
           "--metrics", ""] + SGD, np_=W)
theirs = reference("two_targets.pt", interleaved(a[:N_TRAIN], (label[:N_TRAIN], value[:N_TRAIN])),
                   lambda m, x, y: m.training_step(x, y))
expect_equal("two_targets_trained.pt", theirs, "two targets, training_step(x, (label, value))")
check("val value_mse" in out and "val accuracy" in out, "validation_step's metrics on the tuple targets are logged")


# --- (c) the two-input data as 2 shards: rank r streams shard r --------------------------------------
half = N_TRAIN // 2
for k in range(2):
    save("pair_shards", f"train-{k:05d}", rows((a, b), k * half, (k + 1) * half), label[k * half:(k + 1) * half])
run(["train", "--data", "pair_shards", "--model", "two_inputs.pt", "--out", "sharded_trained.pt", "--no-eval",
     "--metrics", ""] + SGD, np_=W)
per_rank = [[(rows((a, b), r * half + s * B, r * half + (s + 1) * B), label[r * half + s * B:r * half + (s + 1) * B])
             for r in range(W)] for s in range(half // B)]
theirs = reference("two_inputs.pt", per_rank, lambda m, x, y: F.cross_entropy(m(*x), y))
os.rename("sharded_trained.pt", "two_inputs_sharded_trained.pt")
os.link("two_inputs.pt", "two_inputs_sharded.pt")
expect_equal("two_inputs_sharded_trained.pt", theirs, "two inputs from 2 shards")


# --- (d) errors ------------------------------------------------------------------------------------
class OneInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(x)


torch.jit.script(OneInput()).save("two_targets_plain.pt")
def error_lines(out):
    """dptrain's error lines (a machine may add its own warnings, e.g. hwloc without /sys)."""
    return [line for line in out.splitlines() if "error" in line]


errors = error_lines(run(["train", "--data", "pair", "--model", "mlp", "--epochs", "1"], expect=1))
check(len(errors) == 1 and "tuple of 2 tensors" in errors[0], f"a built-in model on two inputs: {errors}")
errors = error_lines(run(["train", "--data", "multi", "--model", "two_targets_plain.pt", "--epochs", "1"], expect=1))
check(len(errors) == 1 and "training_step" in errors[0], f"--loss on two targets: {errors}")
save("uneven", "train", (a[:10], b[:9]), label[:10])
errors = error_lines(run(["train", "--data", "uneven", "--model", "two_inputs.pt", "--epochs", "1"], expect=1))
check(len(errors) == 1 and "train.pt" in errors[0] and "samples" in errors[0], f"uneven tuple parts: {errors}")
