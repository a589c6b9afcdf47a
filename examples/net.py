#!/usr/bin/env python3
"""A model authored in PyTorch, as the README's walk-through uses it: a small CNN for 1x28x28
images (Fashion-MNIST) and 10 classes, saved as TorchScript for `dptrain train --model net.pt`.

    python examples/net.py                 # writes net.pt
    python examples/net.py --out my.pt --seed 1

`from net import Net` (with examples/ on sys.path) gives the module itself, e.g. to export it as a
compiled package (python/dptrain_export) or to load the trained weights back.
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def main():
    parser = argparse.ArgumentParser(description="Saves the example CNN as TorchScript.")
    parser.add_argument("--out", default="net.pt", help="TorchScript file to write")
    parser.add_argument("--seed", type=int, default=0, help="initial weights' seed")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.jit.script(Net()).save(args.out)
    print(f"net.py: wrote {args.out} (TorchScript; dptrain train --model {args.out})")


if __name__ == "__main__":
    main()
