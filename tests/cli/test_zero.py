"""`dptrain train --zero 1|2` (ZeRO: the optimizer state, and at stage 2 the gradients, sharded over the
ranks, dpt::ShardedOptimizer):

  (a) --zero 1 at 2 and 3 ranks and --zero 2 at 2, 3 and 4 ranks end equal to the same run without
      --zero (Adam), within 1e-5 (reduce-scatter + all-gather add the same numbers as the
      all-reduce, in the same order for two ranks). Clipping by the global norm is checked against clip_grad_norm_ in
      tests/mpi/test_sharded_optimizer.cpp: its norm is summed from the shards in float64, torch's
      in float32, and 40 Adam steps turn that into ~1e-4;
  (b) its checkpoints hold the unsharded optimizer state in torch.optim's layout (one entry per
      parameter, in the parameter's shape), so they do not depend on the world size: a --zero 2 run
      stopped at 2 ranks and resumed at 3 (same global batch) ends equal to the uninterrupted run,
      within the float noise that changing the world size brings to an unsharded run too (the
      difference between the unsharded runs at 2 and 3 ranks; at least 1e-5);
  (c) a TorchScript model trained with --zero 1 and with --zero 2 at 3 ranks ends equal to PyTorch's
      own training of it on the same global batches (Adam, --no-shuffle), within 1e-5;
  (d) --zero 3 is one clear error.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from cli_helpers import DATA, check, load_state, run

common = ["train", "--model", "mlp", "--data", DATA, "--limit-samples", "960", "--epochs", "2", "--optimizer", "adam",
          "--lr", "0.002", "--seed", "3", "--metrics", "", "--no-eval", "--log-every", "5"]


def max_difference(a_path, b_path):
    a, b = load_state(a_path), load_state(b_path)
    check(set(a) == set(b), f"{a_path} and {b_path} hold the same tensors")
    return max(((a[k].double() - b[k].double()).abs().max() / b[k].double().abs().max().clamp_min(1)).item()
               for k in b)


# (a) equal to the unsharded run, 2, 3 and 4 ranks (global batch 48).
for world, batch in ((2, 24), (3, 16), (4, 12)):
    run(common + ["--batch-size", str(batch), "--out", f"plain{world}.pt"], np_=world)
    for stage in ((1, 2) if world < 4 else (2,)):
        run(common + ["--batch-size", str(batch), "--zero", str(stage), "--out", f"zero{stage}_{world}.pt"], np_=world)
        worst = max_difference(f"zero{stage}_{world}.pt", f"plain{world}.pt")
        check(worst < 1e-5, f"--zero {stage} at {world} ranks equals the unsharded run (max relative difference {worst:.1e})")

# (b) a checkpoint of a --zero run: the whole state, resumable at another world size.
run(common + ["--batch-size", "24", "--zero", "2", "--checkpoint-dir", "ckpt", "--stop-after-steps", "10",
              "--out", "half.pt"], np_=2)
checkpoint = torch.load(sorted(__import__("glob").glob("ckpt/checkpoint-*.pt"))[-1])
params = load_state("plain2.pt")
state = checkpoint["optimizer"]["state"]
check(len(state) == len([k for k in params if "running" not in k]) and
      all(set(s) >= {"exp_avg", "exp_avg_sq", "step"} for s in state.values()),
      f"the checkpoint holds Adam's state for every parameter ({len(state)} entries), not one rank's shard")
shapes = sorted(tuple(s["exp_avg"].shape) for s in state.values())
check(shapes == sorted(tuple(v.shape) for k, v in params.items() if "running" not in k),
      "each entry has its parameter's shape (the torch.optim layout)")
run(common + ["--batch-size", "16", "--zero", "2", "--checkpoint-dir", "ckpt", "--resume", "--out", "resumed.pt"],
    np_=3)
worst = max_difference("resumed.pt", "zero2_2.pt")
noise = max(1e-5, 2 * max_difference("plain3.pt", "plain2.pt"))
check(worst <= noise, f"stopped at 2 ranks and resumed at 3 with --zero 2: equal to the uninterrupted run "
                      f"(max relative difference {worst:.1e}, bound {noise:.1e} from the unsharded 2- vs 3-rank runs)")

# (c) against PyTorch: a scripted MLP on Gaussian clusters, rank r of each global batch taking its
# samples r, r+W, ... (--no-shuffle), PyTorch's loss the mean over ranks of each rank's loss.
B, W, LR, STEPS = 8, 3, 0.01, 10


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(20, 33)  # 20*33+33+33*4+4 = 829 elements: shards of 277, padded
        self.out = nn.Linear(33, 4)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x)))


torch.manual_seed(0)
labels = torch.randint(0, 4, (STEPS * W * B,))
points = torch.randn(4, 20)[labels] * 2 + torch.randn(STEPS * W * B, 20)
os.makedirs("clusters", exist_ok=True)
torch.save({"inputs": points, "targets": labels}, "clusters/train.pt")
torch.manual_seed(1)
reference = MLP()
torch.jit.script(reference).save("net.pt")
optimizer = torch.optim.Adam(reference.parameters(), lr=LR)
for step in range(STEPS):
    x, y = points[step * W * B:(step + 1) * W * B], labels[step * W * B:(step + 1) * W * B]
    optimizer.zero_grad()
    (sum(F.cross_entropy(reference(x[r::W]), y[r::W]) for r in range(W)) / W).backward()
    optimizer.step()
theirs = reference.state_dict()
for stage in (1, 2):
    run(["train", "--data", "clusters", "--model", "net.pt", "--optimizer", "adam", "--lr", str(LR), "--lr-schedule",
         "constant", "--no-shuffle", "--batch-size", str(B), "--max-steps", str(STEPS), "--metrics", "", "--no-eval",
         "--zero", str(stage), "--out", f"net_zero{stage}.pt"], np_=W)
    ours = load_state(f"net_zero{stage}.pt")
    worst = max(((ours[k] - theirs[k]).abs().max() / theirs[k].abs().max().clamp_min(1)).item() for k in theirs)
    check(worst < 1e-5, f"--zero {stage} at 3 ranks equals PyTorch's training of the same model "
                        f"(max relative difference {worst:.1e})")

# (d) there is no stage 3.
out = run(common + ["--zero", "3"], expect=2)
check("--zero" in out and len(out.strip().splitlines()) == 1, f"--zero 3: one clear error ({out.strip()})")
