"""A compiled training step (python/dptrain_export, .pt2) beside TorchScript on the same model.

For each model (an MLP and a conv + BatchNorm CNN on Fashion-MNIST-sized inputs) three forms are
made from the same PyTorch module: `torch.jit.script(model).save(...)`,
`export_training_step(model, ...)` (dptrain averages the gradients after the compiled step) and
`export_training_step(model, ..., reduce_gradients=True)` (the program all-reduces each gradient
inside its backward). Then `dptrain train` runs each for the same steps, alternating the forms
(every other round in reverse order) for `--rounds` rounds in this one process tree, at each world
size asked for:

  - samples/s between step `--skip` and the last step (the metrics file's elapsed times);
  - first-step latency: the wall time of a one-step run of the same command (process start to
    exit: loading the model file, first-call costs, one step);
  - file size, and the time to make each file (torch.jit.script + save / export + AOTInductor).

    python benchmarks/export_bench.py --out benchmarks/results/2026-11-26-export

Writes export.json (with a machine block), export.md and export.png; medians of the rounds, each round listed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from ab_rounds import round_order  # noqa: E402
from compare_pytorch import machine_info  # noqa: E402  (the suite's machine block)
from dptrain_export import export_training_step  # noqa: E402


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 512), nn.Linear(512, 256), nn.Linear(256, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.fc1, self.fc2 = nn.Linear(64 * 7 * 7, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def make_files(name, model, batch, out):
    torch.manual_seed(0)
    inputs, targets = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    script_path, package_path = os.path.join(out, f"{name}.pt"), os.path.join(out, f"{name}.pt2")
    start = time.perf_counter()
    torch.jit.script(model).save(script_path)
    script_s = time.perf_counter() - start
    files = {"torchscript": {"path": script_path, "make_s": script_s, "bytes": os.path.getsize(script_path)}}
    for form, reduce in (("package", False), ("package_reduced", True)):
        path = os.path.join(out, f"{name}{'-reduced' if reduce else ''}.pt2")
        start = time.perf_counter()
        export_training_step(model, inputs, targets, loss="cross_entropy", path=path, reduce_gradients=reduce)
        files[form] = {"path": path, "make_s": time.perf_counter() - start, "bytes": os.path.getsize(path)}
    return files


FORMS = (("torchscript", "tab:gray"), ("package", "tab:blue"), ("package_reduced", "tab:green"))


def train(args, model_path, world, metrics, steps=None):
    command = [os.path.join(args.bin, "dptrain"), "train", "--model", model_path, "--max-steps", str(steps or args.steps),
               "--batch-size", str(args.batch), "--no-eval", "--log-every", "10", "--metrics", metrics,
               "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.01"]
    if world > 1:
        command = [os.path.join(ROOT, "scripts", "dpt-mpirun"), "-np", str(world)] + command
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    wall_s = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"export_bench: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    if steps == 1:
        return wall_s
    steps = [json.loads(line) for line in open(metrics) if '"type":"step"' in line]
    first = next(s for s in steps if s["step"] >= args.skip)
    last = steps[-1]
    rate = (last["step"] - first["step"]) * args.batch * world / (last["elapsed_s"] - first["elapsed_s"])
    # First-step latency: a separate run of one step, from starting the command to its exit
    # (loading the model file, first calls, one step).
    return {"samples_per_s": rate, "first_step_s": train(args, model_path, world, metrics, steps=1)}


def plot(results, path):
    """Samples/s of both forms per model and world size, the rounds as points over the medians."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(name, world, runs) for name, entry in results["models"].items() for world, runs in entry["runs"].items()]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(groups), 4))
    for i, (name, world, runs) in enumerate(groups):
        for j, (form, color) in enumerate(f for f in FORMS if f[0] in runs):
            values = [x["samples_per_s"] for x in runs[form]]
            x = i + (j - 1) * 0.27
            ax.bar(x, statistics.median(values), width=0.25, color=color, label=form if i == 0 else None)
            ax.plot([x] * len(values), values, "k.", markersize=4)
    ax.set_xticks(range(len(groups)), [f"{name}\n{world} rank(s)" for name, world, _ in groups])
    ax.set_ylabel("samples/s (median of rounds, rounds as dots)")
    ax.set_title("dptrain train: TorchScript vs compiled packages (.pt2)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--worlds", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--skip", type=int, default=20, help="steps left out of the rate (warm-up)")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {"machine": machine_info(torch), "steps": args.steps, "batch": args.batch, "models": {}}
    for name, model in (("mlp", MLP()), ("cnn", CNN())):
        files = make_files(name, model, args.batch, args.out)
        entry = {"files": files, "runs": {}}
        for world in (int(w) for w in args.worlds.split(",")):
            runs = {form: [] for form, _ in FORMS}
            for r in range(args.rounds):
                for form, _ in round_order(FORMS, r):
                    metrics = os.path.join(args.out, f"{name}_{form}_w{world}_r{r}.jsonl")
                    runs[form].append(train(args, files[form]["path"], world, metrics))
                    os.remove(metrics)
            entry["runs"][str(world)] = runs
            print(f"{name} world {world}: " + ", ".join(
                f"{form} {statistics.median(x['samples_per_s'] for x in v):.0f} samples/s" for form, v in runs.items()),
                flush=True)
        results["models"][name] = entry
    with open(os.path.join(args.out, "export.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = ["# Compiled training steps (.pt2) beside TorchScript", "",
             f"`dptrain train`, SGD, batch {args.batch} per rank, {args.steps} steps, samples/s over steps "
             f"{args.skip}-{args.steps}; medians of {args.rounds} alternated rounds (each listed).", "",
             f"Machine: {results['machine']['cpu_model']}, {results['machine']['logical_cores']} CPUs, torch "
             f"{results['machine']['torch_version']}, load {results['machine']['load_average_1m']:.1f} at start, "
             f"{results['machine']['utc_time']}.", "",
             "package: gradients averaged after the compiled step; reduced: all-reduced inside it "
             "(`reduce_gradients=True`). Ratios are of the medians.", "",
             "| model | ranks | TorchScript samples/s | package samples/s | reduced samples/s | package / TS | "
             "reduced / package | first step TS / pkg / reduced (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, entry in results["models"].items():
        for world, runs in entry["runs"].items():
            rates = {form: [x["samples_per_s"] for x in runs[form]] for form, _ in FORMS}
            median = {form: statistics.median(v) for form, v in rates.items()}
            first = " / ".join(f"{statistics.median(x['first_step_s'] for x in runs[form]):.2f}" for form, _ in FORMS)
            cells = [f"{median[form]:.0f} ({', '.join(f'{v:.0f}' for v in rates[form])})" for form, _ in FORMS]
            lines.append(f"| {name} | {world} | {' | '.join(cells)} | {median['package'] / median['torchscript']:.2f} | "
                         f"{median['package_reduced'] / median['package']:.2f} | {first} |")
    lines += ["", "| model | TorchScript file | package | reduced package | made in (TS / package / reduced) |",
              "|---|---:|---:|---:|---:|"]
    for name, entry in results["models"].items():
        f = entry["files"]
        lines.append(f"| {name} | " + " | ".join(f"{f[form]['bytes'] / 1e6:.2f} MB" for form, _ in FORMS) + " | "
                     + " / ".join(f"{f[form]['make_s']:.1f} s" for form, _ in FORMS) + " |")
    plot(results, os.path.join(args.out, "export.png"))
    lines += ["", "![samples/s](export.png)"]
    with open(os.path.join(args.out, "export.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
