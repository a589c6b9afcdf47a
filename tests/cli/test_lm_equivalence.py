"""A GPT written in PyTorch, scripted, trained by `dpt-mpirun -np 2 dptrain train` on a token corpus,
ends equal to PyTorch's own training of the same module on the same batches (issue 34).

With --no-shuffle, step k of 2 ranks x batch 4 takes windows 8k .. 8k+7 of train.bin (rank r the
positions r, r+2, ...), and DDP averages the two ranks' mean token losses: the mean over the 8
windows' tokens, which a single PyTorch process computes with F.cross_entropy on [8*T, V]. SGD
with momentum and weight decay, and AdamW with the LM recipe's betas (0.9, 0.95), at a constant
learning rate. A run over other windows is the control: the comparison must be able to fail.
"""
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cli_helpers import check, run

CONTEXT, STEPS, LR = 32, 10, 1e-3


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(d, 2)
        q = q.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab: int = 256, context: int = CONTEXT, dim: int = 32, heads: int = 4, layers: int = 2):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, idx):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # tied head


os.makedirs("gpl", exist_ok=True)
subprocess.run([sys.executable, os.path.join(os.environ["DPTRAIN_SOURCE_DIR"], "scripts", "data", "tokenize_text.py"),
                "/usr/share/common-licenses/GPL-3", "--out", "gpl"], check=True)
torch.manual_seed(0)
torch.jit.script(GPT()).save("lm.pt")
tokens = torch.from_numpy(np.fromfile("gpl/train.bin", dtype=np.uint16).astype(np.int64))

def pytorch_training(make_optimizer):
    """PyTorch's own training of the saved module on the windows dptrain takes: (state, losses)."""
    net = torch.jit.load("lm.pt")
    optimizer = make_optimizer(net.parameters())
    losses = []
    for step in range(STEPS):
        windows = range(8 * step, 8 * step + 8)
        x = torch.stack([tokens[w * CONTEXT:w * CONTEXT + CONTEXT] for w in windows])
        y = torch.stack([tokens[w * CONTEXT + 1:w * CONTEXT + CONTEXT + 1] for w in windows])
        loss = F.cross_entropy(net(x).reshape(-1, 256), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
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


base = ["train", "--model", "lm.pt", "--data", "gpl", "--context", str(CONTEXT), "--batch-size", "4",
        "--lr-schedule", "constant", "--max-steps", str(STEPS), "--metrics", "", "--no-eval", "--log-every", "1",
        "--weight-decay", "0.1", "--lr", str(LR)]
recipes = {
    "sgd": (["--optimizer", "sgd", "--momentum", "0.9"],
            lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9, weight_decay=0.1), lambda key: None),
    "adamw": (["--optimizer", "adamw", "--adam-betas", "0.9,0.95"],
              lambda p: torch.optim.AdamW(p, lr=LR, betas=(0.9, 0.95), weight_decay=0.1), key_bias),
}
for name, (options, make_optimizer, skip) in recipes.items():
    out = run(base + options + ["--no-shuffle", "--out", f"{name}.pt"], np_=2)
    run(base + options + ["--seed", "3", "--out", f"{name}-control.pt"], np_=2)
    theirs, losses = pytorch_training(make_optimizer)
    ours = torch.jit.load(f"{name}.pt").state_dict()
    control = torch.jit.load(f"{name}-control.pt").state_dict()
    check(set(ours) == set(theirs), f"{name}: the trained file has the PyTorch module's names")
    logged = [float(line.split("loss ")[1].split()[0]) for line in out.splitlines() if "] epoch 1 step" in line]
    check(len(logged) == STEPS and all(abs(a - b) < 1e-4 * abs(b) for a, b in zip(logged, losses)),
          f"{name}: each step's logged loss equals PyTorch's ({logged[-1]:.4f} vs {losses[-1]:.4f} at step {STEPS})")
    worst, apart = difference(ours, theirs, skip), difference(control, theirs, skip)
    check(worst < 1e-5, f"{name}: after {STEPS} steps at 2 ranks the parameters equal PyTorch's (max relative "
                        f"difference {worst:.2e}{', the key bias aside' if name == 'adamw' else ''})")
    check(apart > 1e-3, f"{name}: the control run (shuffled: {apart:.2e}) differs, so the comparison can fail")
