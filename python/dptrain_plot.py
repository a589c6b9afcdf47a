#!/usr/bin/env python3
"""Training curves of dptrain runs as a picture, from their metrics files (`dptrain train --metrics`).

    python python/dptrain_plot.py dptrain-metrics.jsonl -o curves.png
    python python/dptrain_plot.py run-a.jsonl run-b.jsonl -o compare.png     # runs side by side

Panels: the loss (training steps as a line, each epoch's test loss as points), the test accuracy
or the validation metrics per epoch, the learning rate, and samples/s. Installed as `dptrain-plot`.
For curves while a run trains use TensorBoard (`dptrain train --tensorboard DIR`).
"""
import argparse
import json
import os
import sys
from collections import defaultdict


def read_metrics(path):
    """The step and epoch records of one metrics file (JSON lines)."""
    steps, epochs = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"dptrain-plot: {path}:{number}: not a JSON line ({e.msg})")
            (steps if record.get("type") == "step" else epochs).append(record)
    if not steps and not epochs:
        sys.exit(f"dptrain-plot: {path} holds no step or epoch records: is it a dptrain --metrics file?")
    return steps, epochs


def series(records, key):
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None and "step" in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot(runs, output, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epoch_keys = sorted({k for _, (_, epochs) in runs for r in epochs for k in r
                         if k == "test_accuracy" or k.startswith("val_")} - {"val_loss"})
    panels = ["loss"] + (["evaluation"] if epoch_keys else []) + ["lr", "samples_per_s"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, (steps, epochs)) in enumerate(runs):
        color = colors[index % len(colors)]
        prefix = f"{label}: " if len(runs) > 1 else ""
        x, y = series(steps, "loss")
        axes["loss"].plot(x, y, color=color, linewidth=1.2, label=prefix + "train")
        x, y = series(epochs, "test_loss")
        if x:
            axes["loss"].plot(x, y, "o--", color=color, markersize=4, label=prefix + "test")
        for k, key in enumerate(epoch_keys):
            x, y = series(epochs, key)
            if key == "test_accuracy":
                y = [100 * v for v in y]
            style = ["o-", "s-", "^-", "d-"][k % 4]
            name = "test accuracy (%)" if key == "test_accuracy" else key[4:]
            axes["evaluation"].plot(x, y, style, color=color, markersize=4, label=prefix + name)
        for key in ("lr", "samples_per_s"):
            x, y = series(steps, key)
            axes[key].plot(x, y, color=color, linewidth=1.2, label=label)
    titles = {"loss": "loss", "evaluation": "evaluation per epoch", "lr": "learning rate",
              "samples_per_s": "throughput (samples/s)"}
    for name, ax in axes.items():
        ax.set_title(titles[name])
        ax.set_xlabel("optimizer step")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0] and (name in ("loss", "evaluation") or len(runs) > 1):
            ax.legend(fontsize=8)
    axes["lr"].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = output + ".tmp"
    fig.savefig(tmp, dpi=110, format=os.path.splitext(output)[1][1:] or "png")
    os.replace(tmp, output)  # never half a picture
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", nargs="+", help="metrics files written by dptrain train --metrics")
    parser.add_argument("-o", "--out", default="dptrain-curves.png", help="picture to write (.png, .svg, .pdf)")
    parser.add_argument("--title", default="", help="a title above the panels")
    args = parser.parse_args(argv)
    runs = []
    for path in args.metrics:
        if not os.path.isfile(path):
            sys.exit(f"dptrain-plot: {path}: no such file")
        runs.append((os.path.splitext(os.path.basename(path))[0], read_metrics(path)))
    plot(runs, args.out, args.title)
    print(f"dptrain-plot: wrote {args.out}")


if __name__ == "__main__":
    main()
