#!/usr/bin/env python3
"""What DDP costs where there is nothing to reduce: world size 1, plain training against the same
training under DistributedDataParallel, dptrain (ddp_bench) and PyTorch (compare_pytorch.py) side
by side, the configurations alternated round by round in this one process tree.

Each round runs, in turn, dptrain plain, dptrain DDP, PyTorch plain, PyTorch DDP (and, with
--before, a second ddp_bench, e.g. an older build, plain and under DDP), every other round in the
reverse order; every run reports the
median step time of its timed steps. DDP's overhead in a round = DDP step / plain step - 1 of
that round's pair, and the figure quoted is the median over rounds with the smallest and largest
beside it (this machine's load moves every run by +-20%; a pair run back to back moves less).

    python benchmarks/ddp_world_one.py --out benchmarks/results/2026-12-03-world-one
    python benchmarks/ddp_world_one.py --out /tmp/w1 --rounds 2 --models mlp
    python benchmarks/ddp_world_one.py --out /tmp/w1 --device cuda      (the GPU script's phase)

Writes world_one.json (machine block, every round's step times), world_one.md and world_one.png.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_rounds import ROOT, machine_line, pyplot, round_order, run_checked  # noqa: E402
from compare_pytorch import machine_info, write_report  # noqa: E402

# Per model and device: batch, timed steps, warm-up steps (enough steps for a steady median).
PLAN = {
    ("mlp", "cpu"): (64, 200, 20),
    ("cnn", "cpu"): (64, 40, 5),
    ("mlp", "cuda"): (128, 300, 30),
    ("cnn", "cuda"): (128, 200, 20),
    ("resnet18", "cuda"): (128, 60, 10),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, help="directory for world_one.json, .md, .png")
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"), help="where ddp_bench is")
    p.add_argument("--before", default="", help="another ddp_bench (its directory's libdptrain_*.so first) to compare")
    p.add_argument("--python", default=sys.executable, help="python with torch for compare_pytorch.py")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads")
    p.add_argument("--no-pytorch", action="store_true", help="dptrain only")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    for model in args.models:
        if (model, args.device) not in PLAN:
            p.error(f"--models: no plan for {model} on {args.device}; choose from "
                    f"{sorted(m for m, d in PLAN if d == args.device)}")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    return args


def forms(args):
    """(key, label, command prefix, environment additions, extra arguments)."""
    ours = os.path.join(args.bin, "ddp_bench")
    out = [("ours_plain", "dptrain plain", [ours], {}, ["--no-ddp"]),
           ("ours_ddp", "dptrain DDP", [ours], {}, [])]
    if args.before:
        libs = {"LD_LIBRARY_PATH": os.path.dirname(os.path.abspath(args.before))}
        out += [("before_plain", "before: plain", [args.before], libs, ["--no-ddp"]),
                ("before_ddp", "before: DDP", [args.before], libs, [])]
    if not args.no_pytorch:
        theirs = [args.python, os.path.join(ROOT, "benchmarks", "compare_pytorch.py"), "--quiet"]
        out += [("torch_plain", "PyTorch plain", theirs, {}, ["--no-ddp"]), ("torch_ddp", "PyTorch DDP", theirs, {}, [])]
    return out


def run_once(args, model, prefix, env_add, extra, workdir):
    batch, steps, warmup = PLAN[(model, args.device)]
    path = os.path.join(workdir, "run.json")
    command = prefix + ["--model", model, "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup),
                        "--threads", str(args.threads), "--device", args.device, "--json", path] + extra
    run_checked(command, model, dict(OMP_NUM_THREADS=str(args.threads), DPTRAIN_LOG_LEVEL="warn", **env_add))
    with open(path) as f:
        doc = json.load(f)
    return doc["results"]["step_time_s"]["median"]


def overhead(results, model, ddp, plain):
    rounds = results["models"][model]["rounds"]
    pct = [(r[ddp] / r[plain] - 1) * 100 for r in rounds if ddp in r and plain in r]
    if not pct:
        return None
    return {"median_pct": statistics.median(pct), "min_pct": min(pct), "max_pct": max(pct), "rounds_pct": pct}


def table(results):
    pairs = [("dptrain", "ours_ddp", "ours_plain"), ("before", "before_ddp", "before_plain"),
             ("PyTorch", "torch_ddp", "torch_plain")]
    lines = [f"# DDP at world size 1 against plain training ({results['device']})", "",
             f"Medians over {results['rounds']} alternated rounds (smallest..largest round); step times are each "
             "run's median step, in ms.", "",
             "| model | batch | framework | plain step | DDP step | DDP overhead | rounds' overheads |",
             "|---|---:|---|---:|---:|---:|---|"]
    for model, entry in results["models"].items():
        for label, ddp, plain in pairs:
            stats = entry["overhead"].get(label)
            if not stats:
                continue
            step = lambda k: statistics.median(r[k] for r in entry["rounds"]) * 1e3  # noqa: E731
            lines.append(f"| {model} | {entry['batch']} | {label} | {step(plain):.3f} | {step(ddp):.3f} | "
                         f"{stats['median_pct']:+.2f}% ({stats['min_pct']:+.1f}..{stats['max_pct']:+.1f}) | "
                         + ", ".join(f"{v:+.1f}" for v in stats["rounds_pct"]) + " |")
    lines += ["", machine_line(results["machine"], f"{results['threads']} intra-op thread(s)")]
    return lines


def plot(results, path):
    plt = pyplot()
    models = list(results["models"])
    labels = [k for k in ("dptrain", "before", "PyTorch") if any(k in results["models"][m]["overhead"] for m in models)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        values = [results["models"][m]["overhead"].get(label, {}).get("median_pct", 0) for m in models]
        ax.bar([x + i * width for x in range(len(models))], values, width, label=label)
    ax.axhline(2, color="grey", linestyle="--", linewidth=0.8, label="2% target")
    ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(models))], models)
    ax.set_ylabel("DDP step / plain step - 1 (%)")
    ax.set_title(f"DDP overhead at world size 1 ({results['device']}, median of {results['rounds']} rounds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = {"device": args.device, "rounds": args.rounds, "threads": args.threads,
               "machine": machine_info(torch), "models": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.models:
            entry = {"batch": PLAN[(model, args.device)][0], "rounds": [], "overhead": {}}
            results["models"][model] = entry
            for round_index in range(args.rounds):
                times = {}
                for key, label, prefix, env_add, extra in round_order(forms(args), round_index):
                    times[key] = run_once(args, model, prefix, env_add, extra, workdir)
                entry["rounds"].append(times)
                print(f"[world_one] {model} round {round_index + 1}/{args.rounds}: "
                      + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in times.items()), flush=True)
            for label, ddp, plain in (("dptrain", "ours_ddp", "ours_plain"), ("before", "before_ddp", "before_plain"),
                                      ("PyTorch", "torch_ddp", "torch_plain")):
                stats = overhead(results, model, ddp, plain)
                if stats:
                    entry["overhead"][label] = stats
    write_report(args.out, "world_one", results, plot, table(results), "DDP overhead at world size 1")
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
