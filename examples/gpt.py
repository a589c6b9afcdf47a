#!/usr/bin/env python3
"""A GPT authored in PyTorch: the architecture of dptrain's built-in `--model gpt` (token and
position embeddings, pre-LayerNorm blocks with causal scaled_dot_product_attention, a GELU MLP, the
head tied to the token embedding), saved as TorchScript for `dptrain train --model gpt.pt`.

    python examples/gpt.py                                  # writes gpt.pt: 256 tokens, context 256
    python examples/gpt.py --vocab 50304 --context 1024 --layers 12 --dim 768 --heads 12 --out g.pt

`from gpt import GPT` (with examples/ on sys.path) gives the module itself: tests and benchmarks
train it in PyTorch beside dptrain (tests/cli/test_lm_equivalence.py).
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


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
    def __init__(self, vocab: int = 256, context: int = 256, dim: int = 128, heads: int = 4, layers: int = 4):
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


def main():
    parser = argparse.ArgumentParser(description="Saves the example GPT as TorchScript.")
    parser.add_argument("--out", default="gpt.pt", help="TorchScript file to write")
    parser.add_argument("--vocab", type=int, default=256, help="vocabulary size (256: byte-level corpora)")
    parser.add_argument("--context", type=int, default=256, help="positions (dptrain train --context at most this)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="initial weights' seed")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = GPT(args.vocab, args.context, args.dim, args.heads, args.layers)
    torch.jit.script(model).save(args.out)
    count = sum(p.numel() for p in model.parameters())
    print(f"gpt.py: wrote {args.out} ({count} parameters, TorchScript; dptrain train --model {args.out})")


if __name__ == "__main__":
    main()
