#!/usr/bin/env python3
"""The optimizer behind the wire: DDP stepping each bucket's parameters as soon as that bucket is
reduced (`--overlap-optimizer`) against the step after backward, dptrain and PyTorch side by side
(PyTorch's own form of it is `DistributedDataParallel._register_fused_optim`), at one world size.

The MLP and the CNN run in ddp_bench and compare_pytorch.py (synthetic batches, AdamW by default),
the GPT in `dptrain train --model gpt` on a byte-level corpus (AdamW; no PyTorch beside it). A
round runs every form once, every other round in reverse order, all in this one process tree.

    python benchmarks/optimizer_overlap.py --out benchmarks/results/2026-12-04-optimizer-overlap
    python benchmarks/optimizer_overlap.py --out /tmp/overlap --rounds 1 --models mlp --no-pytorch

Per run: samples/s of the timed steps (ddp_bench, compare_pytorch.py) or tokens/s (the GPT: the
median of the logged steps after step 10). Quoted per model: the median over rounds of overlapped /
after-backward within a round, for each framework, and of dptrain (overlapped, and after backward)
/ PyTorch DDP (its usual step after backward), with the smallest and largest round's ratio beside
each. --report-only renders them again from the JSON. Writes optimizer_overlap.json (machine
block, every round), optimizer_overlap.md and optimizer_overlap.png.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_rounds import (ROOT, machine_line, median_of, mpirun, pyplot, ratio_summary, ratio_text,  # noqa: E402
                       round_order, run_checked, samples_per_s)
from compare_pytorch import machine_info, write_report  # noqa: E402

BENCH_PLAN = {"mlp": (64, 100, 10), "cnn": (64, 30, 5)}  # batch per rank, timed steps, warm-up steps
GPT_ARGS = ["--model", "gpt", "--context", "128", "--gpt-layers", "6", "--gpt-dim", "256", "--gpt-heads", "4",
            "--batch-size", "8", "--optimizer", "adamw", "--lr", "1e-3", "--max-steps", "40", "--log-every", "5",
            "--no-eval", "--seed", "1"]
QUIET = {"DPTRAIN_LOG_LEVEL": "warn"}  # the figures come from the JSON and the metrics file
# (key, label, framework, overlapped)
FORMS = [("ours_after", "dptrain, step after backward", "ours", False),
         ("ours_overlap", "dptrain, --overlap-optimizer", "ours", True),
         ("torch_after", "PyTorch DDP, step after backward", "theirs", False),
         ("torch_overlap", "PyTorch DDP, _register_fused_optim", "theirs", True)]
RATIOS = [("dptrain overlapped / after", "ours_overlap", "ours_after"),
          ("PyTorch overlapped / after", "torch_overlap", "torch_after"),
          ("dptrain overlapped / PyTorch DDP", "ours_overlap", "torch_after"),
          ("dptrain after / PyTorch DDP", "ours_after", "torch_after")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, help="directory for optimizer_overlap.json, .md, .png")
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"), help="where ddp_bench and dptrain are")
    p.add_argument("--python", default=sys.executable, help="python with torch (compare_pytorch.py, the corpus)")
    p.add_argument("--models", default="mlp,cnn,gpt")
    p.add_argument("--optimizer", default="adamw", choices=["sgd", "adamw"], help="ddp_bench's and PyTorch's")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--np", type=int, default=2, help="ranks")
    p.add_argument("--no-pytorch", action="store_true", help="dptrain only")
    p.add_argument("--report-only", action="store_true",
                   help="no runs: the ratios, table and plot again from OUT/optimizer_overlap.json")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    for model in args.models:
        if model not in BENCH_PLAN and model != "gpt":
            p.error(f"--models: {model} is not one of mlp, cnn, gpt")
    if args.rounds < 1 or args.np < 2:
        p.error("--rounds must be >= 1 and --np >= 2 (at world size 1 there is no wire to hide behind)")
    return args


def forms_of(args, model):
    return [f for f in FORMS if f[2] == "ours" or (model != "gpt" and not args.no_pytorch)]


def optimizer_arguments(args, overlapped):
    return ["--optimizer", args.optimizer] + (["--overlap-optimizer"] if overlapped else [])


def gpt_run(args, overlapped, workdir):
    """tokens/s of one GPT training run: the median of the logged steps after step 10."""
    metrics = os.path.join(workdir, "gpt.jsonl")
    command = mpirun(args.np) + [os.path.join(args.bin, "dptrain"), "train", "--data", os.path.join(workdir, "corpus"),
                                 "--metrics", metrics] + GPT_ARGS
    run_checked(command + (["--overlap-optimizer"] if overlapped else []), "gpt", QUIET)
    with open(metrics) as f:
        steps = [r for r in map(json.loads, f) if r["type"] == "step" and r["step"] > 10]
    return statistics.median(r["tokens_per_s"] for r in steps)


def table(results):
    lines = [f"# The optimizer behind the wire, world size {results['np']} ({results['optimizer']})", "",
             f"Medians over {results['rounds']} alternated rounds (smallest..largest round's ratio).", "",
             "| model | unit | form | median |", "|---|---|---|---:|"]
    for model, entry in results["models"].items():
        for key, label, _, _ in FORMS:
            if key in entry["rounds"][0]:
                lines.append(f"| {model} | {entry['unit']} | {label} | {median_of(entry['rounds'], key):.1f} |")
    lines += ["", "| model | " + " | ".join(label for label, _, _ in RATIOS) + " |", "|---|" + "---:|" * len(RATIOS)]
    for model, entry in results["models"].items():
        cells = [ratio_text(entry["ratios"][label]) if label in entry["ratios"] else "-" for label, _, _ in RATIOS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", machine_line(results["machine"], "1 intra-op thread per rank")]
    return lines


def plot(results, path):
    plt = pyplot()
    models = list(results["models"])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    width = 0.8 / len(RATIOS)
    for i, (label, _, _) in enumerate(RATIOS):
        for x, model in enumerate(models):
            summary = results["models"][model]["ratios"].get(label)
            if not summary:
                continue
            ax.bar(x + i * width, summary["median"], width, color=f"C{i}", alpha=0.7, label=label if x == 0 else None)
            ax.scatter([x + i * width] * len(summary["rounds"]), summary["rounds"], color="grey", s=10, zorder=3)
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks([x + width * (len(RATIOS) - 1) / 2 for x in range(len(models))], models)
    ax.set_ylabel("throughput ratio")
    ax.set_title(f"Optimizer inside backward, {results['np']} ranks (bars: median, dots: rounds)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_ratios(entry):
    for label, numerator, denominator in RATIOS:
        if numerator in entry["rounds"][0] and denominator in entry["rounds"][0]:
            entry["ratios"][label] = ratio_summary(entry["rounds"], numerator, denominator)


def finish(args, results):
    write_report(args.out, "optimizer_overlap", results, plot, table(results), "optimizer inside backward")
    print("\n".join(table(results)))
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        with open(os.path.join(args.out, "optimizer_overlap.json")) as f:
            results = json.load(f)
        for entry in results["models"].values():
            add_ratios(entry)
        return finish(args, results)
    os.makedirs(args.out, exist_ok=True)
    results = {"np": args.np, "rounds": args.rounds, "optimizer": args.optimizer, "gpt_args": GPT_ARGS,
               "bench_plan": BENCH_PLAN, "machine": machine_info(torch), "models": {}}
    with tempfile.TemporaryDirectory() as workdir:
        if "gpt" in args.models:
            run_checked([args.python, os.path.join(ROOT, "scripts", "data", "tokenize_text.py"),
                         "/usr/share/common-licenses/GPL-3", "--out", os.path.join(workdir, "corpus")], "the corpus")
        for model in args.models:
            entry = {"unit": "tokens/s" if model == "gpt" else "samples/s", "rounds": [], "ratios": {}}
            results["models"][model] = entry
            for round_index in range(args.rounds):
                speeds = {}
                for key, _, framework, overlapped in round_order(forms_of(args, model), round_index):
                    speeds[key] = (gpt_run(args, overlapped, workdir) if model == "gpt"
                                   else samples_per_s(args, framework, model, BENCH_PLAN[model], optimizer_arguments(args, overlapped), workdir))
                entry["rounds"].append(speeds)
                print(f"[optimizer_overlap] {model} round {round_index + 1}/{args.rounds}: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in speeds.items()), flush=True)
            add_ratios(entry)
    return finish(args, results)


if __name__ == "__main__":
    sys.exit(main())
