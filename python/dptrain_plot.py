#!/usr/bin/env python3
"""Training curves of dptrain runs as a picture, from their metrics files (`dptrain train --metrics`).

    python python/dptrain_plot.py dptrain-metrics.jsonl -o curves.png
    python python/dptrain_plot.py run-a.jsonl run-b.jsonl -o compare.png     # runs side by side

Four panels, two by two: the training loss of every step (faint) with a smoothed line over it and
the test loss of each evaluation as points; the test accuracy (top-k too) or the validation
metrics of each evaluation; the learning rate; samples/s. Installed as
`dptrain-plot`. For curves while a run trains use TensorBoard (`dptrain train --tensorboard DIR`).
"""
import argparse
import json
import os
import sys


def read_metrics(path):
    """The records of one metrics file (JSON lines), by kind: training steps, evaluations."""
    steps, losses, evaluations = [], [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"dptrain-plot: {path}:{number}: not a JSON line ({e.msg})")
            kind = record.get("type")
            if kind == "step":
                steps.append(record)
            if kind in ("step", "loss"):  # "loss": a step between two logged ones
                losses.append(record)
            if kind in ("epoch", "eval", "final"):
                evaluations.append(record)
    if not steps and not losses and not evaluations:
        sys.exit(f"dptrain-plot: {path} holds no step or epoch records: is it a dptrain --metrics file?")
    losses.sort(key=lambda r: r.get("step", 0))
    return steps, losses, evaluations


def series(records, key, scale=1.0):
    points = [(r["step"], scale * r[key]) for r in records if r.get(key) is not None and "step" in r]
    return [p[0] for p in points], [p[1] for p in points]


def smoothed(values, weight):
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    out, average, correction = [], 0.0, 0.0
    for value in values:
        average = weight * average + (1 - weight) * value
        correction = weight * correction + (1 - weight)
        out.append(average / correction)
    return out


def evaluation_keys(runs):
    keys = {k for run in runs for r in run[1][2] for k in r
            if k == "test_accuracy" or (k.startswith("test_top") and k.endswith("_accuracy"))
            or (k.startswith("val_") and k != "val_loss")}
    return sorted(keys)


def label_of(key):
    if key.endswith("accuracy"):
        return key.replace("_", " ").replace("test top", "test top-") + " (%)"
    return key[4:] if key.startswith("val_") else key


def plot(runs, output, title, smoothing):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = evaluation_keys(runs)
    fig, grid = plt.subplots(2, 2, figsize=(10, 7.4))
    axes = {"loss": grid[0][0], "evaluation": grid[0][1], "lr": grid[1][0], "samples_per_s": grid[1][1]}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, (steps, losses, evaluations)) in enumerate(runs):
        color = colors[index % len(colors)]
        prefix = f"{label}: " if len(runs) > 1 else ""
        x, y = series(losses, "loss")
        if x:
            axes["loss"].plot(x, y, color=color, linewidth=0.8, alpha=0.3)
            axes["loss"].plot(x, smoothed(y, smoothing), color=color, linewidth=1.6,
                              label=f"{prefix}train (smoothed {smoothing:g})")
        x, y = series(evaluations, "test_loss")
        if x:
            axes["loss"].plot(x, y, "o--", color=color, markersize=4, label=prefix + "test")
        for k, key in enumerate(keys):
            x, y = series(evaluations, key, 100.0 if key.endswith("accuracy") else 1.0)
            style = ["o-", "s-", "^-", "d-"][k % 4]
            axes["evaluation"].plot(x, y, style, color=color, markersize=4, label=prefix + label_of(key))
        for key in ("lr", "samples_per_s"):
            x, y = series(steps, key)
            axes[key].plot(x, y, color=color, linewidth=1.2, label=label)
    if not keys:
        axes["evaluation"].text(0.5, 0.5, "no accuracy or validation metric\nin these files", ha="center",
                                va="center", transform=axes["evaluation"].transAxes, color="gray")
    titles = {"loss": "loss", "evaluation": "evaluation", "lr": "learning rate",
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
    parser.add_argument("--smoothing", type=float, default=0.9,
                        help="weight of the training loss's moving average, as TensorBoard's slider (0: none)")
    args = parser.parse_args(argv)
    if not 0 <= args.smoothing < 1:
        sys.exit(f"dptrain-plot: --smoothing must be in [0, 1), got {args.smoothing}")
    runs = []
    for path in args.metrics:
        if not os.path.isfile(path):
            sys.exit(f"dptrain-plot: {path}: no such file")
        runs.append((os.path.splitext(os.path.basename(path))[0], read_metrics(path)))
    plot(runs, args.out, args.title, args.smoothing)
    print(f"dptrain-plot: wrote {args.out}")


if __name__ == "__main__":
    main()
