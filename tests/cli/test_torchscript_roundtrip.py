"""A PyTorch user's path: torch.jit.script a model, train it with `mpirun -np 2 dptrain train`,
load the result in PyTorch, and check PyTorch's predictions equal `dptrain infer`'s; `dptrain eval`
agrees with PyTorch's accuracy. Also a built-in model saved by dptrain loads in PyTorch."""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from cli_helpers import DATA, check, load_state, read_idx_images, run


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 14 * 14, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(x, 1))


torch.manual_seed(0)
torch.jit.script(Net()).save("net.pt")
before = load_state("net.pt")

out = run(["train", "--model", "net.pt", "--limit-samples", "512", "--batch-size", "16", "--max-steps", "12",
           "--optimizer", "sgd", "--lr", "0.05", "--out", "trained.pt", "--metrics", "m.jsonl",
           "--log-every", "4"], np_=2)
check("test accuracy" in out, "train prints the test accuracy")
after = load_state("trained.pt")
check(set(before) == set(after), "the trained file has the scripted model's parameters and buffers")
check(any(not torch.equal(before[k], after[k]) for k in before), "training changed the parameters")
check(not torch.equal(before["bn.running_mean"], after["bn.running_mean"]), "BatchNorm statistics were updated")

out = run(["infer", "--model", "trained.pt", "--limit-samples", "300", "--batch-size", "32", "--out", "preds.pt"],
          np_=2)
ours = torch.load("preds.pt")
model = torch.jit.load("trained.pt")
model.eval()
images = read_idx_images(f"{DATA}/t10k-images-idx3-ubyte.gz", 300)
with torch.no_grad():
    theirs = model(images)
check(ours.shape == (300, 10), f"infer wrote [300, 10] outputs (got {list(ours.shape)})")
check(torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5), "dptrain infer outputs equal PyTorch's, in sample order")
check(torch.equal(ours.argmax(1), theirs.argmax(1)), "predicted classes identical")

out = run(["eval", "--model", "trained.pt", "--limit-samples", "300"], np_=2)
match = re.search(r"accuracy ([0-9.]+)%", out)
import gzip
raw = gzip.open(f"{DATA}/t10k-labels-idx1-ubyte.gz").read()
labels = torch.tensor(list(raw[8:8 + 300]))
accuracy = (theirs.argmax(1) == labels).float().mean().item() * 100
check(match and abs(float(match.group(1)) - accuracy) < 0.01,
      f"dptrain eval accuracy {match.group(1) if match else '?'}% equals PyTorch's {accuracy:.2f}%")

# A built-in model trained and saved by dptrain is a TorchScript file PyTorch loads and runs.
run(["train", "--model", "cnn", "--limit-samples", "256", "--batch-size", "32", "--max-steps", "2",
     "--out", "cnn.pt", "--metrics", ""])
cnn = torch.jit.load("cnn.pt")
check(cnn(images[:4]).shape == (4, 10), "the built-in cnn saved by dptrain runs in PyTorch")
