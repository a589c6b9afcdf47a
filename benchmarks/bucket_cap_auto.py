#!/usr/bin/env python3
"""DDP's --bucket-cap auto against the 25 MB default at world size 2: what it chose, from which
sweep, and what it gained. The MLP and the CNN run in ddp_bench (synthetic batches), the GPT in
`dptrain train --model gpt` on a byte-level corpus (scripts/data/tokenize_text.py of a text every
Debian machine has); the two forms alternate round by round in this one process tree, every
other round in reverse order.

    python benchmarks/bucket_cap_auto.py --out benchmarks/results/2026-12-04-bucket-cap-auto
    python benchmarks/bucket_cap_auto.py --out /tmp/cap --rounds 1 --models mlp
    python benchmarks/bucket_cap_auto.py --out benchmarks/results/2026-12-04-bucket-cap-auto-1gbit --link 1gbit

--link RATE runs each rank on a simulated host of its own (scripts/cluster/netns-hosts.sh, root
only; benchmarks/cluster_bench.py's links: veth, 25gbit, 10gbit, 1gbit, 50 us each way), so the
gradients cross a link of that rate instead of this machine's shared memory.

Per run: samples/s (ddp_bench: the timed steps after the warm-up, which covers auto's two
measuring steps) or tokens/s (the GPT: the median of the logged steps after step 10). The figure
quoted per model is the median over rounds of auto / 25 MB with the smallest and largest round's
beside it (this machine's load moves runs by +-20%). Writes bucket_cap_auto.json (machine block,
every round, each model's sweep), bucket_cap_auto.md and bucket_cap_auto.png.
"""
import argparse
import json
import os
import re
import contextlib
import statistics
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ab_rounds import ROOT, machine_line, mpirun, pyplot, ratio_summary, round_order, run_checked  # noqa: E402
from compare_pytorch import machine_info, write_report  # noqa: E402
import cluster_bench  # noqa: E402

# ddp_bench models: batch per rank, timed steps, warm-up steps (>= 2: auto measures in those).
BENCH_PLAN = {"mlp": (64, 100, 10), "cnn": (64, 30, 5)}
GPT_ARGS = ["--model", "gpt", "--context", "128", "--gpt-layers", "6", "--gpt-dim", "256", "--gpt-heads", "4",
            "--batch-size", "8", "--optimizer", "adamw", "--lr", "1e-3", "--max-steps", "40", "--log-every", "5",
            "--no-eval", "--seed", "1"]
CHOICE = re.compile(r"DDP auto (bucket cap .*)$", re.M)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, help="directory for bucket_cap_auto.json, .md, .png")
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"), help="where ddp_bench and dptrain are")
    p.add_argument("--python", default=sys.executable, help="python with torch (the corpus is tokenized with it)")
    p.add_argument("--models", default="mlp,cnn,gpt")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--np", type=int, default=2, help="ranks")
    p.add_argument("--link", default="none", choices=("none",) + cluster_bench.LINKS,
                   help="none: the ranks on this machine; else one rank per simulated host, joined by this link")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    for model in args.models:
        if model not in BENCH_PLAN and model != "gpt":
            p.error(f"--models: {model} is not one of mlp, cnn, gpt")
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    args.out = os.path.abspath(args.out)
    if args.link != "none" and (args.out == "/tmp" or args.out.startswith("/tmp/")):
        p.error("--out must be outside /tmp with --link: each simulated host has a private /tmp")
    return args


def launch(args, program, what):
    """The output of `program` on args.np ranks: here, or one rank per simulated host (--link)."""
    if args.link == "none":
        return run_checked(mpirun(args.np) + program, what)
    where = ["--host", ",".join(f"{cluster_bench.PREFIX}{h}:1" for h in range(args.np)), "-np", str(args.np),
             "-x", "OMP_NUM_THREADS=1"]
    command = [cluster_bench.HOSTS_SH, "exec", cluster_bench.PREFIX + "0"] + cluster_bench.MPI + where + program
    done = subprocess.run(command, env=cluster_bench.ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"bucket_cap_auto.py: error: {what}: {' '.join(command)} exited {done.returncode}:\n"
                 f"{done.stdout[-2000:]}")
    return done.stdout


@contextlib.contextmanager
def simulated_hosts(args):
    """args.np simulated hosts joined by args.link for the duration (nothing with --link none)."""
    if args.link == "none":
        yield
        return
    cluster_bench.hosts("down", check=False)
    cluster_bench.hosts("up", str(args.np))
    try:
        print(cluster_bench.hosts("check").stdout.strip(), flush=True)
        for h in range(args.np):
            cluster_bench.hosts("link", f"{cluster_bench.PREFIX}{h}", "none" if args.link == "veth" else args.link,
                                "50us")
        yield
    finally:
        cluster_bench.hosts("down", check=False)


def bench_run(args, model, auto, workdir):
    """(samples/s, the cap used in MB, the sweep or None) of one ddp_bench run."""
    batch, steps, warmup = BENCH_PLAN[model]
    path = os.path.join(workdir, "run.json")
    program = [os.path.join(args.bin, "ddp_bench"), "--model", model, "--batch", str(batch), "--steps", str(steps),
               "--warmup", str(warmup), "--json", path, "--quiet"]
    launch(args, program + (["--bucket-cap-auto"] if auto else []), f"{model} ({'auto' if auto else '25 MB'})")
    with open(path) as f:
        doc = json.load(f)
    return doc["results"]["samples_per_s"], doc["bucket_cap_mb_used"], doc.get("bucket_cap_choice")


def gpt_run(args, auto, workdir):
    """(tokens/s, the choice's log line or None) of one GPT training run."""
    metrics = os.path.join(workdir, "gpt.jsonl")
    program = [os.path.join(args.bin, "dptrain"), "train", "--data", os.path.join(workdir, "corpus"),
               "--metrics", metrics, "--bucket-cap", "auto" if auto else "25"] + GPT_ARGS
    log = launch(args, program, f"gpt ({'auto' if auto else '25 MB'})")
    with open(metrics) as f:
        steps = [r for r in map(json.loads, f) if r["type"] == "step" and r["step"] > 10]
    found = CHOICE.search(log)
    return statistics.median(r["tokens_per_s"] for r in steps), found.group(1) if found else None


def table(results):
    where = "" if results.get("link", "none") == "none" else f", one rank per simulated host, {results['link']} links"
    lines = [f"# --bucket-cap auto against 25 MB, world size {results['np']}{where}", "",
             f"Medians over {results['rounds']} alternated rounds (smallest..largest round's ratio).", "",
             "| model | unit | 25 MB | auto | auto / 25 MB | chose |", "|---|---|---:|---:|---:|---|"]
    for model, entry in results["models"].items():
        median = lambda k: statistics.median(r[k] for r in entry["rounds"])  # noqa: E731
        s = entry["ratio"]
        lines.append(f"| {model} | {entry['unit']} | {median('default'):.1f} | {median('auto'):.1f} | "
                     f"**{s['median']:.3f}x** ({s['min']:.3f}..{s['max']:.3f}) | {entry['chosen_mb']:g} MB |")
    lines += ["", "What each chose from (the deciding rank's simulated end of the last reduction per cap):", ""]
    for model, entry in results["models"].items():
        lines.append(f"- {model}: {entry['sweep']}")
    lines += ["", machine_line(results["machine"])]
    return lines


def sweep_text(choice):
    if choice is None:
        return "no choice recorded"
    if isinstance(choice, str):
        return choice
    trials = ", ".join(f"{t['cap_mb']:g} MB {t['simulated_end_s'] * 1e3:.2f} ms ({t['buckets']} buckets)"
                       for t in choice["trials"])
    return f"backward {choice['backward_s'] * 1e3:.2f} ms; {trials}"


def plot(results, path):
    plt = pyplot()
    models = list(results["models"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for x, model in enumerate(models):
        ratios = results["models"][model]["ratio"]["rounds"]
        ax.scatter([x] * len(ratios), ratios, color="grey", s=12)
        ax.bar(x, results["models"][model]["ratio"]["median"], 0.6, alpha=0.6)
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("auto / 25 MB (throughput)")
    link = "" if results.get("link", "none") == "none" else f", {results['link']}"
    ax.set_title(f"--bucket-cap auto, world size {results['np']}{link} (bars: median; dots: rounds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = {"np": args.np, "rounds": args.rounds, "link": args.link, "machine": machine_info(torch), "models": {}}
    # With --link the work files must be where every simulated host sees them: not in /tmp.
    with simulated_hosts(args), tempfile.TemporaryDirectory(dir=None if args.link == "none" else args.out) as workdir:
        if "gpt" in args.models:
            run_checked([args.python, os.path.join(ROOT, "scripts", "data", "tokenize_text.py"),
                 "/usr/share/common-licenses/GPL-3", "--out", os.path.join(workdir, "corpus")], "the corpus")
        for model in args.models:
            entry = {"unit": "tokens/s" if model == "gpt" else "samples/s", "rounds": []}
            results["models"][model] = entry
            for round_index in range(args.rounds):
                speeds = {}
                for auto in round_order([False, True], round_index):
                    if model == "gpt":
                        speed, line = gpt_run(args, auto, workdir)
                        if auto:
                            entry["sweep"] = sweep_text(line)
                            found = re.match(r"bucket cap ([0-9.e+-]+) MB", line or "")
                            entry["chosen_mb"] = float(found.group(1)) if found else 25.0
                    else:
                        speed, used_mb, choice = bench_run(args, model, auto, workdir)
                        if auto:
                            entry["sweep"], entry["chosen_mb"] = sweep_text(choice), used_mb
                    speeds["auto" if auto else "default"] = speed
                entry["rounds"].append(speeds)
                print(f"[bucket_cap_auto] {model} round {round_index + 1}/{args.rounds}: 25 MB {speeds['default']:.1f}, "
                      f"auto {speeds['auto']:.1f} {entry['unit']}", flush=True)
            entry["ratio"] = ratio_summary(entry["rounds"], "auto", "default")
    write_report(args.out, "bucket_cap_auto", results, plot, table(results), "--bucket-cap auto against 25 MB")
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
