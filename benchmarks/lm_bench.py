#!/usr/bin/env python3
"""GPT tokens/s: dptrain beside PyTorch's eager DDP, the same architecture, corpus, batch, context,
optimizer and precision, at each world size, the forms alternated round by round in this one
process tree.

Forms (--forms, all by default):
  builtin   dptrain train --model gpt (the built-in GPT)
  scripted  dptrain train --model gpt.pt (examples/gpt.py, torch.jit.script)
  package   dptrain train --model gpt.pt2 (examples/gpt.py, export_training_step: a compiled step)
  pytorch   benchmarks/lm_pytorch.py: examples/gpt.py in PyTorch's DistributedDataParallel
Every form is launched by scripts/dpt-mpirun -np W (world 1: one plain process, still under DDP
in both frameworks) with OMP_NUM_THREADS = cores / W, trains --steps steps of AdamW on the byte-level corpus
of /usr/share/common-licenses (Debian's license texts, 260 KB), and logs every 5 steps; tokens/s is measured from step --skip to
the last (the metrics file's elapsed times: data loading, forward, backward, all-reduce and the
optimizer, as a user's run spends them). MFU = tokens/s per rank x (6N + 12 L D T) / the peak
dptrain timed at its start (one peak for every form, so MFUs compare as tokens/s do).

    python benchmarks/lm_bench.py --out benchmarks/results/2026-12-02-lm
    python benchmarks/lm_bench.py --out /tmp/lm --rounds 1 --steps 30 --forms builtin,pytorch --worlds 2

Writes lm.json (machine block, every round), lm.md (the table) and lm.png.
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "examples"))
from compare_pytorch import machine_info, write_report  # noqa: E402  (the suite's machine block, its files)
from dptrain_export import export_training_step  # noqa: E402
from gpt import GPT  # noqa: E402

FORMS = ("builtin", "scripted", "package", "pytorch")
LABELS = {"builtin": "dptrain, built-in gpt", "scripted": "dptrain, scripted gpt.py",
          "package": "dptrain, exported gpt.py (.pt2)", "pytorch": "PyTorch eager DDP"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", required=True, help="directory for lm.json, lm.md, lm.png")
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    p.add_argument("--worlds", default="1,2")
    p.add_argument("--forms", default=",".join(FORMS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--skip", type=int, default=10, help="steps left out of the rate (warm-up, TorchScript's profiling runs)")
    p.add_argument("--batch", type=int, default=8, help="windows per rank per step")
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    args.worlds = [int(w) for w in args.worlds.split(",")]
    args.forms = args.forms.split(",")
    unknown = [f for f in args.forms if f not in FORMS]
    if unknown:
        p.error(f"--forms: {unknown[0]} is not one of {', '.join(FORMS)}")
    if args.skip >= args.steps - 5:
        p.error("--skip must leave at least two log intervals of --steps")
    return args


def make_corpus(work):
    # Debian's license texts (260 KB; base-files ships them), else this checkout's docs.
    texts = sorted(p for p in glob.glob("/usr/share/common-licenses/*") if os.path.isfile(p) and not os.path.islink(p))
    texts = texts or sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    corpus = os.path.join(work, "corpus")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "data", "tokenize_text.py"), *texts, "--out", corpus,
                    "--val-fraction", "0.05"], check=True, capture_output=True)
    return corpus


def make_models(args):
    """gpt.pt (scripted) and gpt.pt2 (exported) of one examples/gpt.py module; its FLOPs per token."""
    torch.manual_seed(0)
    model = GPT(256, args.context, args.dim, args.heads, args.layers)
    files = {}
    if "scripted" in args.forms:
        files["scripted"] = os.path.join(args.work, "gpt.pt")
        torch.jit.script(model).save(files["scripted"])
    if "package" in args.forms:
        files["package"] = os.path.join(args.work, "gpt.pt2")
        x = torch.randint(0, 256, (args.batch, args.context + 1), device=args.device)
        # The package runs on the device it was compiled for (its kernels are the device's).
        export_training_step(model.to(args.device), x[:, :-1], x[:, 1:], loss="cross_entropy", path=files["package"])
        model.cpu()
    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("wpe."))
    return files, 6 * n + 12 * args.layers * args.dim * args.context, sum(p.numel() for p in model.parameters())


def command_of(args, form, files, world, metrics):
    # World 1 runs as one plain process (both frameworks find no launcher and train alone).
    launch = [os.path.join(ROOT, "scripts", "dpt-mpirun"), "-np", str(world)] if world > 1 else []
    if form == "pytorch":
        return launch + [sys.executable, os.path.join(ROOT, "benchmarks", "lm_pytorch.py"), "--data", args.corpus,
                         "--context", str(args.context), "--batch", str(args.batch), "--steps", str(args.steps),
                         "--layers", str(args.layers), "--dim", str(args.dim), "--heads", str(args.heads),
                         "--precision", args.precision, "--device", args.device, "--metrics", metrics]
    model = ["--model", "gpt", "--gpt-layers", str(args.layers), "--gpt-dim", str(args.dim), "--gpt-heads",
             str(args.heads)] if form == "builtin" else ["--model", files[form]]
    return launch + [os.path.join(args.bin, "dptrain"), "train", *model, "--data", args.corpus, "--context",
                     str(args.context), "--batch-size", str(args.batch), "--max-steps", str(args.steps), "--no-eval",
                     "--log-every", "5", "--metrics", metrics, "--optimizer", "adamw", "--adam-betas", "0.9,0.95",
                     "--weight-decay", "0.1", "--lr", "3e-4", "--lr-schedule", "constant", "--precision",
                     args.precision, "--device", args.device]


def run_once(args, form, files, world, metrics):
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // world)))
    command = command_of(args, form, files, world, metrics)
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    if done.returncode != 0:
        sys.exit(f"lm_bench: {' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    steps = [json.loads(line) for line in open(metrics) if '"type": "step"' in line or '"type":"step"' in line]
    first = next(s for s in steps if s["step"] >= args.skip)
    last = steps[-1]
    tokens = (last["step"] - first["step"]) * args.batch * world * args.context
    result = {"tokens_per_s": tokens / (last["elapsed_s"] - first["elapsed_s"]), "final_loss": last.get("loss")}
    peak = re.search(r"against a peak of ([0-9.]+) TFLOP/s per rank", done.stdout + done.stderr)
    if peak:
        result["peak_tflops"] = float(peak.group(1))
    os.remove(metrics)
    return result


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"builtin": "tab:blue", "scripted": "tab:cyan", "package": "tab:purple", "pytorch": "tab:gray"}
    worlds = list(results["runs"])
    forms = list(results["runs"][worlds[0]])
    width = 0.8 / len(forms)
    fig, ax = plt.subplots(figsize=(2.5 + 2.2 * len(worlds), 4))
    for i, world in enumerate(worlds):
        for j, form in enumerate(forms):
            values = [r["tokens_per_s"] for r in results["runs"][world][form]]
            x = i + (j - (len(forms) - 1) / 2) * width
            ax.bar(x, statistics.median(values), width=width * 0.95, color=colors[form],
                   label=LABELS[form] if i == 0 else None)
            ax.plot([x] * len(values), values, "k.", markersize=4)
    ax.set_xticks(range(len(worlds)), [f"{w} rank(s)" for w in worlds])
    ax.set_ylabel("tokens/s (median of rounds, rounds as dots)")
    ax.set_title(f"GPT ({results['parameters'] / 1e6:.2f}M parameters, context {results['context']}, "
                 f"{results['precision']}): dptrain vs PyTorch DDP")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(results):
    peaks = [r["peak_tflops"] for w in results["runs"].values() for f in w.values() for r in f if "peak_tflops" in r]
    peak = statistics.median(peaks) if peaks else None
    m = results["machine"]
    lines = ["# GPT tokens/s: dptrain beside PyTorch's eager DDP", "",
             f"{results['parameters']} parameters ({results['layers']} layers, width {results['dim']}, "
             f"{results['heads']} heads), context {results['context']}, batch {results['batch']} windows per rank, "
             f"AdamW, {results['precision']}, {results['steps']} steps, tokens/s over steps {results['skip']}-"
             f"{results['steps']}; medians of {results['rounds']} alternated rounds (each listed).", "",
             f"Machine: {m['cpu_model']}, {m['logical_cores']} CPUs, torch {m['torch_version']}, load "
             f"{m['load_average_1m']:.1f} at start, {m['utc_time']}." +
             (f" MFU against {peak:.3f} TFLOP/s per rank (the matmul dptrain timed)." if peak else ""), "",
             "| ranks | form | tokens/s | vs PyTorch | MFU |", "|---:|---|---:|---:|---:|"]
    for world, forms in results["runs"].items():
        theirs = statistics.median(r["tokens_per_s"] for r in forms["pytorch"]) if "pytorch" in forms else None
        for form, runs in forms.items():
            values = [r["tokens_per_s"] for r in runs]
            median = statistics.median(values)
            ratio = f"{median / theirs:.2f}x" if theirs else "-"
            mfu = f"{median / int(world) * results['flops_per_token'] / (peak * 1e12) * 100:.1f}%" if peak else "-"
            lines.append(f"| {world} | {LABELS[form]} | {median:.0f} ({', '.join(f'{v:.0f}' for v in values)}) | "
                         f"{ratio} | {mfu} |")
    return lines


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    # The corpus, the models and the metrics files are inputs and scratch: only the figures stay in --out.
    with tempfile.TemporaryDirectory(prefix="lm_bench.") as work:
        args.work = work
        run_all(args)


def run_all(args):
    args.corpus = make_corpus(args.work)
    start = time.perf_counter()
    files, flops_per_token, parameters = make_models(args)
    results = {"benchmark": "lm", "machine": machine_info(torch), "parameters": parameters,
               "flops_per_token": flops_per_token, "layers": args.layers, "dim": args.dim, "heads": args.heads,
               "context": args.context, "batch": args.batch, "steps": args.steps, "skip": args.skip,
               "rounds": args.rounds, "precision": args.precision, "device": args.device,
               "make_models_s": time.perf_counter() - start, "runs": {}}
    for world in args.worlds:
        runs = {form: [] for form in args.forms}
        for r in range(args.rounds):
            for form in args.forms:  # alternated: A B C D A B C D ...
                metrics = os.path.join(args.work, f"{form}_w{world}_r{r}.jsonl")
                runs[form].append(run_once(args, form, files, world, metrics))
        results["runs"][str(world)] = runs
        print(f"world {world}: " + ", ".join(
            f"{form} {statistics.median(x['tokens_per_s'] for x in v):.0f} tokens/s" for form, v in runs.items()),
            flush=True)
    write_report(args.out, "lm", results, plot, table(results), "tokens/s")
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
