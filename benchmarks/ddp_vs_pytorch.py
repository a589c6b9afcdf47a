#!/usr/bin/env python3
"""dptrain's DDP against PyTorch's at one world size, with .grad as bucket views (dptrain's
default) and without: ddp_bench and compare_pytorch.py (PyTorch's DDP over gloo) on the same
model, batch and SGD, alternated round by round in this one process tree, every other round in
reverse order.

    python benchmarks/ddp_vs_pytorch.py --out benchmarks/results/2026-12-04-ddp-vs-pytorch
    python benchmarks/ddp_vs_pytorch.py --out /tmp/vs --rounds 1 --models mlp --np 2

Per run: samples/s of the timed steps. Quoted per model: the median over rounds of each form's
samples/s and of dptrain / PyTorch within a round, with the smallest and largest round's ratio
beside it (this machine's load moves runs by +-20%). Writes ddp_vs_pytorch.json (machine block,
every round), ddp_vs_pytorch.md and ddp_vs_pytorch.png.
"""
import argparse
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_rounds import ROOT, machine_line, pyplot, ratio_summary, round_order, samples_per_s  # noqa: E402
from compare_pytorch import machine_info, write_report  # noqa: E402

PLAN = {"mlp": (64, 100, 10), "cnn": (64, 30, 5)}  # batch per rank, timed steps, warm-up steps
FORMS = [("views", "dptrain (views)", "ours", []),
         ("copies", "dptrain (copies)", "ours", ["--no-gradient-as-bucket-view"]),
         ("pytorch", "PyTorch DDP", "theirs", [])]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, help="directory for ddp_vs_pytorch.json, .md, .png")
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"), help="where ddp_bench is")
    p.add_argument("--python", default=sys.executable, help="python with torch for compare_pytorch.py")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--np", type=int, default=2, help="ranks")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    for model in args.models:
        if model not in PLAN:
            p.error(f"--models: {model} is not one of {', '.join(PLAN)}")
    if args.rounds < 1 or args.np < 1:
        p.error("--rounds and --np must be >= 1")
    return args


def table(results):
    lines = [f"# dptrain DDP against PyTorch DDP, world size {results['np']}", "",
             f"Medians over {results['rounds']} alternated rounds (smallest..largest round's ratio); samples/s.", "",
             "| model | batch/rank | dptrain (views) | dptrain (copies) | PyTorch DDP | views / PyTorch | copies / PyTorch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for model, entry in results["models"].items():
        median = lambda k: statistics.median(r[k] for r in entry["rounds"])  # noqa: E731
        v, c = entry["views_vs_pytorch"], entry["copies_vs_pytorch"]
        lines.append(f"| {model} | {entry['batch']} | {median('views'):.1f} | {median('copies'):.1f} | "
                     f"{median('pytorch'):.1f} | **{v['median']:.3f}x** ({v['min']:.3f}..{v['max']:.3f}) | "
                     f"{c['median']:.3f}x ({c['min']:.3f}..{c['max']:.3f}) |")
    lines += ["", machine_line(results["machine"], "1 thread per rank")]
    return lines


def plot(results, path):
    plt = pyplot()
    models = list(results["models"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, key in enumerate(("views", "copies")):
        values = [results["models"][m][f"{key}_vs_pytorch"]["median"] for m in models]
        ax.bar([x + i * 0.38 for x in range(len(models))], values, 0.38, label=f"dptrain ({key}) / PyTorch")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks([x + 0.19 for x in range(len(models))], models)
    ax.set_ylabel("samples/s ratio")
    ax.set_title(f"DDP at world size {results['np']}, median of {results['rounds']} rounds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = {"np": args.np, "rounds": args.rounds, "machine": machine_info(torch), "models": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.models:
            entry = {"batch": PLAN[model][0], "rounds": []}
            results["models"][model] = entry
            for round_index in range(args.rounds):
                speeds = {key: samples_per_s(args, program, model, PLAN[model], extra, workdir)
                          for key, _, program, extra in round_order(FORMS, round_index)}
                entry["rounds"].append(speeds)
                print(f"[ddp_vs_pytorch] {model} round {round_index + 1}/{args.rounds}: "
                      + ", ".join(f"{label} {speeds[key]:.1f}" for key, label, _, _ in FORMS), flush=True)
            entry["views_vs_pytorch"] = ratio_summary(entry["rounds"], "views", "pytorch")
            entry["copies_vs_pytorch"] = ratio_summary(entry["rounds"], "copies", "pytorch")
    write_report(args.out, "ddp_vs_pytorch", results, plot, table(results), "dptrain DDP against PyTorch DDP")
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
