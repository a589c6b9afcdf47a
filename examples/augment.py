#!/usr/bin/env python3
"""A per-sample transform written in PyTorch, for `dptrain train --transform augment.pt`: a random
horizontal flip and a little noise, drawn from the generator seeded by the sample's own seed, so
the result does not depend on how many preprocessing workers run it.

    python examples/augment.py             # writes augment.pt
"""
import argparse

import torch


class Augment(torch.nn.Module):
    def forward(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        g = torch.Generator()
        g.manual_seed(seed)
        if torch.rand(1, generator=g).item() < 0.5:
            x = x.flip(-1)
        return x + 0.05 * torch.randn(x.shape, generator=g)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Saves the example transform as TorchScript.")
    parser.add_argument("--out", default="augment.pt", help="TorchScript file to write")
    args = parser.parse_args()
    torch.jit.script(Augment()).save(args.out)  # torch.jit.script reads this file's source
    print(f"augment.py: wrote {args.out} (dptrain train --transform {args.out})")
