"""A compiled training step exported on DEVICE trains under `dptrain train` on that device and ends
equal to PyTorch's own training there (SGD momentum, same batches, --no-shuffle; conv + BatchNorm,
buffers included). For the GPU machine (scripts/gpu/build-and-test.sh, phase `export`: a CUDA
package, which the CPU-only CI cannot make); runs on the CPU as well, which is how it was checked.

    python tests/gpu/export_device_check.py --device cuda --bin build/bin --work /tmp/export-check
"""
import argparse
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
from dptrain_export import export_training_step  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "cli"))
from package_models import ConvBN  # noqa: E402

B, LR, STEPS = 16, 0.05, 6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--work", default="export-check")
    args = parser.parse_args()
    device = torch.device(args.device)
    os.makedirs(os.path.join(args.work, "data"), exist_ok=True)
    torch.manual_seed(2)
    labels = torch.randint(0, 3, (B * STEPS,))
    images = torch.randn(B * STEPS, 1, 8, 8) + labels.view(-1, 1, 1, 1).float()
    torch.save({"inputs": images, "targets": labels}, os.path.join(args.work, "data", "train.pt"))
    torch.save({"inputs": images[:40], "targets": labels[:40]}, os.path.join(args.work, "data", "test.pt"))

    torch.manual_seed(3)
    model = ConvBN().to(device)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    package = os.path.join(args.work, "convbn.pt2")
    export_training_step(model, images[:B].to(device), labels[:B].to(device), path=package)

    out = os.path.join(args.work, "trained.pt")
    command = [os.path.join(args.bin, "dptrain"), "train", "--model", package, "--data", os.path.join(args.work, "data"),
               "--device", device.type, "--optimizer", "sgd", "--momentum", "0.9", "--lr", str(LR), "--lr-schedule",
               "constant", "--no-shuffle", "--batch-size", str(B), "--max-steps", str(STEPS), "--metrics", "",
               "--out", out]
    print("+", " ".join(command), flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    print(done.stdout)
    if done.returncode != 0:
        sys.exit(f"FAIL: dptrain train exited {done.returncode}")

    model.load_state_dict(initial)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    model.train()
    for s in range(STEPS):
        optimizer.zero_grad()
        x, y = images[s * B:(s + 1) * B].to(device), labels[s * B:(s + 1) * B].to(device)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    theirs = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ours = torch.load(out)
    worst = max(((ours[k].double() - theirs[k].double()).abs().max() /
                 theirs[k].double().abs().max().clamp_min(1)).item() for k in theirs)
    # cuDNN and Inductor's kernels differ from eager ones in summation order: a looser bound on GPU.
    bound = 1e-5 if device.type == "cpu" else 1e-3
    if set(ours) != set(theirs) or worst >= bound:
        sys.exit(f"FAIL: {device} package vs PyTorch on {device}: max relative difference {worst:.1e} (bound {bound})")
    print(f"ok: a package exported on {device} trained by dptrain equals PyTorch's training on {device} "
          f"(max relative difference {worst:.1e}, buffers included)")


if __name__ == "__main__":
    main()
