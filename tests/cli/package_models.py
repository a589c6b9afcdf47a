"""What the tests of compiled packages share: their small models, their data files, and PyTorch's own
training of a model as dptrain trains it (the reference every package run is compared against)."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, widths=(20, 32, 4)):
        super().__init__()
        layers = []
        for i in range(len(widths) - 1):
            layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
        self.layers = nn.Sequential(*layers[:-1])

    def forward(self, x):
        return self.layers(x)


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(x, 1))


def save_data(directory, inputs, targets, test=40):
    """A tensor-file data directory: every sample to train on, the first `test` to evaluate."""
    os.makedirs(directory, exist_ok=True)
    torch.save({"inputs": inputs, "targets": targets}, f"{directory}/train.pt")
    torch.save({"inputs": inputs[:test], "targets": targets[:test]}, f"{directory}/test.pt")


def reference(model, inputs, targets, world, batch, lr, steps, accumulation=1):
    """PyTorch's training as `dptrain train --no-shuffle` does it (SGD, momentum 0.9): per step each
    rank's mean loss over its share of each micro-batch (rank r: every world-th sample), averaged
    over ranks and micro-batches; buffers end as rank 0's forward leaves them (DDP broadcasts rank
    0's buffers every step)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    per_micro = world * batch
    for s in range(steps):
        optimizer.zero_grad()
        for m in range(accumulation):
            start = (s * accumulation + m) * per_micro
            x, y = inputs[start:start + per_micro], targets[start:start + per_micro]
            buffers = {k: v.clone() for k, v in model.named_buffers()}
            for r in reversed(range(world)):  # rank 0 last: its buffer update is the one kept
                with torch.no_grad():
                    for k, v in model.named_buffers():
                        v.copy_(buffers[k])
                (F.cross_entropy(model(x[r::world]), y[r::world]) / (world * accumulation)).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_relative_difference(ours, theirs):
    """The largest difference of two state_dicts, relative to each tensor's largest magnitude (at least 1)."""
    return max(((ours[k].double() - theirs[k].double()).abs().max() /
                theirs[k].double().abs().max().clamp_min(1)).item() for k in theirs)
