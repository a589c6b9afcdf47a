"""A GPT written in PyTorch, scripted, trained by `dpt-mpirun -np 2 dptrain train` on a token corpus,
ends equal to PyTorch's own training of the same module on the same batches (issue 34).

With --no-shuffle, step k of 2 ranks x batch 4 takes windows 8k .. 8k+7 of train.bin (rank r the
positions r, r+2, ...), and DDP averages the two ranks' mean token losses: the mean over the 8
windows' tokens, which a single PyTorch process computes with F.cross_entropy on [8*T, V]. SGD
with momentum and weight decay, AdamW with the LM recipe's betas (0.9, 0.95), and AdamW with
biases, norms and embeddings left out of weight decay (two parameter groups), at a constant
learning rate. A run over other windows is the control: the comparison must be able to fail.

bf16: `--precision bf16` against PyTorch's own torch.autocast("cpu", torch.bfloat16) training. There
the comparison is per rank, as DDP computes it: each rank's 4 windows in bf16 are not the 8 of one
process (bf16 matmuls round their sums), so PyTorch backpropagates each rank's mean loss in turn,
sums the fp32 gradients and halves them, as the all-reduce does.
"""
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

from cli_helpers import check, run

CONTEXT, STEPS, LR = 32, 10, 1e-3

sys.path.insert(0, os.path.join(os.environ["DPTRAIN_SOURCE_DIR"], "examples"))
sys.path.insert(0, os.path.join(os.environ["DPTRAIN_SOURCE_DIR"], "python"))
from gpt import GPT  # noqa: E402  (examples/gpt.py: the built-in GPT's architecture in PyTorch)
from dptrain_export import export_training_step  # noqa: E402
from dptrain_order import epoch_order  # noqa: E402  (the shuffled order of token windows)


os.makedirs("gpl", exist_ok=True)
subprocess.run([sys.executable, os.path.join(os.environ["DPTRAIN_SOURCE_DIR"], "scripts", "data", "tokenize_text.py"),
                "/usr/share/common-licenses/GPL-3", "--out", "gpl"], check=True)
torch.manual_seed(0)
gpt = GPT(context=CONTEXT, dim=32, heads=4, layers=2)
torch.jit.script(gpt).save("lm.pt")
tokens = torch.from_numpy(np.fromfile("gpl/train.bin", dtype=np.uint16).astype(np.int64))
# The same module (the same initial weights) as a compiled training step: forward, the token
# cross-entropy over [B, T, V] and backward in one AOTInductor program.
# Sliced from windows of CONTEXT + 1 as LM code writes it (rows with a stride of CONTEXT + 1: the
# export makes them contiguous, as dptrain's batches are).
examples = tokens[:2 * (CONTEXT + 1)].view(2, CONTEXT + 1)
export_training_step(gpt, examples[:, :-1], examples[:, 1:], loss="cross_entropy", path="lm.pt2")

def pytorch_training(make_optimizer, bf16=False, order=None):
    """PyTorch's own training of the saved module on the windows dptrain takes: (state, losses).
    `order`: the epoch's window order (default: unshuffled, 0, 1, 2, ...)."""
    global current_net
    net = current_net = torch.jit.load("lm.pt")
    optimizer = make_optimizer(net.parameters())
    losses = []
    for step in range(STEPS):
        windows = range(8 * step, 8 * step + 8) if order is None else order[8 * step:8 * step + 8]
        x = torch.stack([tokens[w * CONTEXT:w * CONTEXT + CONTEXT] for w in windows])
        y = torch.stack([tokens[w * CONTEXT + 1:w * CONTEXT + CONTEXT + 1] for w in windows])
        optimizer.zero_grad()
        if bf16:
            rank_losses = []
            for rank in range(2):  # rank r holds windows r, r + 2, ... of the step
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = F.cross_entropy(net(x[rank::2]).reshape(-1, 256), y[rank::2].reshape(-1))
                loss.backward()
                rank_losses.append(loss.item())
            for p in net.parameters():
                p.grad /= 2
            losses.append(sum(rank_losses) / 2)
        else:
            loss = F.cross_entropy(net(x).reshape(-1, 256), y.reshape(-1))
            loss.backward()
            losses.append(loss.item())
        optimizer.step()
    return net.state_dict(), losses


def difference(a, b, skip=lambda key: None):
    """Max relative difference over the parameters; `skip(key)` masks entries out of one tensor."""
    worst = 0.0
    for key in b:
        d = (a[key] - b[key]).abs()
        mask = skip(key)
        if mask is not None:
            d = d[~mask]
        worst = max(worst, (d.max() / b[key].abs().max().clamp(min=1)).item())
    return worst


# The key bias (the middle third of qkv.bias) gets a gradient that is zero in exact arithmetic:
# adding it to every key adds the same q.b to each score of a row, which softmax ignores. What
# reaches it is rounding noise (1e-10), which Adam divides by its own size into steps of +-lr: the
# two trainings move it differently although everything else agrees to 1e-7. SGD compares it too.
def key_bias(key):
    if not key.endswith("qkv.bias"):
        return None
    mask = torch.zeros(96, dtype=torch.bool)
    mask[32:64] = True
    return mask


base = ["train", "--data", "gpl", "--context", str(CONTEXT), "--batch-size", "4",
        "--lr-schedule", "constant", "--max-steps", str(STEPS), "--metrics", "", "--no-eval", "--log-every", "1",
        "--weight-decay", "0.1", "--lr", str(LR)]
recipes = {
    "sgd": (["--model", "lm.pt", "--optimizer", "sgd", "--momentum", "0.9"],
            lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9, weight_decay=0.1), lambda key: None),
    "adamw": (["--model", "lm.pt", "--optimizer", "adamw", "--adam-betas", "0.9,0.95"],
              lambda p: torch.optim.AdamW(p, lr=LR, betas=(0.9, 0.95), weight_decay=0.1), key_bias),
    # The LM recipe: biases, LayerNorm gains and the embeddings undecayed, as a PyTorch user writes it.
    "adamw-groups": (["--model", "lm.pt", "--optimizer", "adamw", "--adam-betas", "0.9,0.95", "--weight-decay-exclude",
                      "bias,norm,embedding", "--checkpoint-dir", "groups-ckpt"],
                     lambda p: torch.optim.AdamW(lm_param_groups(), lr=LR, betas=(0.9, 0.95)), key_bias),
    "pt2": (["--model", "lm.pt2", "--optimizer", "sgd", "--momentum", "0.9"],
            lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9, weight_decay=0.1), lambda key: None),
    "bf16": (["--model", "lm.pt", "--optimizer", "sgd", "--momentum", "0.9", "--precision", "bf16"],
             lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9, weight_decay=0.1), lambda key: None),
}


def lm_param_groups():
    """Decay every matrix of the Linear layers, nothing else (wte/wpe are the embedding tables)."""
    named = list(current_net.named_parameters())
    decay = [p for n, p in named if p.dim() == 2 and not n.startswith(("wte.", "wpe."))]
    rest = [p for n, p in named if not (p.dim() == 2 and not n.startswith(("wte.", "wpe.")))]
    return [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]


for name, (options, make_optimizer, skip) in recipes.items():
    out = run(base + options + ["--no-shuffle", "--out", f"{name}.pt"], np_=2)
    run(base + options + ["--seed", "3", "--out", f"{name}-control.pt"], np_=2)
    theirs, losses = pytorch_training(make_optimizer, bf16=name == "bf16")
    load = torch.load if name == "pt2" else (lambda path: torch.jit.load(path).state_dict())  # a state_dict
    ours, control = load(f"{name}.pt"), load(f"{name}-control.pt")
    check(set(ours) == set(theirs), f"{name}: the trained file has the PyTorch module's names")
    logged = [float(line.split("loss ")[1].split()[0]) for line in out.splitlines() if "] epoch 1 step" in line]
    check(len(logged) == STEPS and all(abs(a - b) < 1e-4 * abs(b) for a, b in zip(logged, losses)),
          f"{name}: each step's logged loss equals PyTorch's ({logged[-1]:.4f} vs {losses[-1]:.4f} at step {STEPS})")
    worst, apart = difference(ours, theirs, skip), difference(control, theirs, skip)
    check(worst < 1e-5, f"{name}: after {STEPS} steps at 2 ranks the parameters equal PyTorch's (max relative "
                        f"difference {worst:.2e}{', the key bias aside' if name == 'adamw' else ''})")
    check(apart > 1e-3, f"{name}: the control run (shuffled: {apart:.2e}) differs, so the comparison can fail")
    if name == "sgd":
        # The shuffled run read the windows python/dptrain_order.py says, in its order.
        shuffled, _ = pytorch_training(make_optimizer, order=epoch_order((len(tokens) - 1) // CONTEXT, seed=3, epoch=0))
        worst = difference(control, shuffled)
        check(worst < 1e-5, f"sgd: the shuffled run (--seed 3) equals PyTorch's training on dptrain_order's windows "
                            f"(max relative difference {worst:.2e})")
    if name == "adamw-groups":
        check("dptrain weight decay: 0.1 on all parameters but 20 tensor(s)" in out,
              "the log says which parameters are left out of weight decay")
        all_decayed = torch.jit.load("adamw.pt").state_dict()
        check(difference(ours, all_decayed, skip) > 1e-4, "leaving them undecayed changes the training")
        saved = torch.load(f"groups-ckpt/checkpoint-{STEPS:010d}.pt", weights_only=False)["optimizer"]
        net = torch.jit.load("lm.pt")
        current_net = net
        resumed = torch.optim.AdamW(lm_param_groups(), lr=LR, betas=(0.9, 0.95))
        resumed.load_state_dict(saved)
        check([g["weight_decay"] for g in resumed.param_groups] == [0.1, 0.0] and
              [len(g["params"]) for g in saved["param_groups"]] == [8, 20],
              "the checkpoint's optimizer has PyTorch's two groups (8 decayed, 20 not) and loads into them")
    if name == "bf16":
        fp32 = torch.jit.load("sgd.pt").state_dict()
        # 10 SGD steps at lr 1e-3 move the two apart by ~4e-5, far above the 0 between the bf16 runs.
        check(difference(ours, fp32) > 1e-5, f"bf16: autocast computed in bf16 (the fp32 run differs by "
                                             f"{difference(ours, fp32):.2e}); the weights stay fp32")
        check({t.dtype for t in ours.values()} == {torch.float32}, "bf16: the saved weights are fp32")
