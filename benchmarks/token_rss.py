"""Resident memory of training on token corpora of several GB: each rank's RSS against the corpus size.

For each size in --sizes-gb it writes a corpus of random byte-level tokens (train.bin of uint16 ids,
a small val.bin, meta.json with vocab_size 256) into a scratch directory, trains a small built-in GPT
on it with `dpt-mpirun -np 2 dptrain train` (--steps steps, --workers preprocessing threads per rank,
permuted windows of --context + 1 tokens), and samples every rank's /proc/<pid>/status (VmRSS,
VmHWM) and /proc/<pid>/smaps (the resident kB of its mapping of train.bin) while it runs. If the
corpus were read into memory, or its touched pages kept, RSS would grow with the corpus (or with the
steps); memory-mapped windows handed back after each read keep it flat. Writes token_rss.json
(machine block, every sample's maximum per rank), token_rss.md and token_rss.png into --out; the
corpora are deleted afterwards.

    python benchmarks/token_rss.py --out benchmarks/results/2026-12-03-token-rss
    python benchmarks/token_rss.py --out /tmp/token-rss --sizes-gb 0.05,0.5 --steps 100
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from compare_pytorch import machine_info, write_report  # noqa: E402  (the suite's machine block, its files)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for token_rss.json, token_rss.md, token_rss.png")
    p.add_argument("--sizes-gb", default="0.05,1,4,8", help="train.bin sizes in GB (1e9 bytes), comma separated")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--batch", type=int, default=8, help="windows per rank per step")
    p.add_argument("--workers", type=int, default=2, help="preprocessing threads per rank (--workers)")
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    p.add_argument("--scratch", default=None, help="where the corpora are written (default: the system's temp dir)")
    args = p.parse_args(argv)
    args.sizes = [float(s) for s in args.sizes_gb.split(",")]
    return args


def write_corpus(directory, gigabytes):
    """train.bin of random ids < 256, written a chunk at a time (the writer never holds it all)."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    tokens = int(gigabytes * 1e9) // 2
    chunk = 1 << 26
    with open(os.path.join(directory, "train.bin"), "wb") as f:
        for start in range(0, tokens, chunk):
            rng.integers(0, 256, min(chunk, tokens - start), dtype=np.uint16).tofile(f)
    rng.integers(0, 256, 1 << 16, dtype=np.uint16).tofile(os.path.join(directory, "val.bin"))
    with open(os.path.join(directory, "meta.json"), "w") as f:
        json.dump({"dtype": "uint16", "vocab_size": 256}, f)
    return tokens


def ranks_of(corpus):
    """{rank: pid} of the dptrain processes training on `corpus`."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if not argv[0].endswith(b"dptrain") or corpus.encode() not in argv:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
            found[int(env.get(b"OMPI_COMM_WORLD_RANK", b"0"))] = int(pid)
        except (OSError, ValueError):
            continue  # gone, or not ours
    return found


def sample(pid, train_bin):
    """(VmRSS, VmHWM, resident of the train.bin mapping, RssAnon, RssFile) in kB of one process, None once
    it is gone. RssFile counts the shared libraries' mapped pages too (libtorch's alone are hundreds of
    MiB, and how many of them a process has mapped depends on the page cache), RssAnon the process's
    own memory: the part that would grow if the corpus or its order were held."""
    try:
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                status[key] = value
        mapped, inside = 0, False
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(" ", 1)[0]
                if "-" in first and ":" not in first:  # a mapping's header: address range ... path
                    inside = line.rstrip().endswith(train_bin)
                elif inside and line.startswith("Rss:"):
                    mapped += int(line.split()[1])
        kb = {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}
        return kb["VmRSS"], kb["VmHWM"], mapped, kb["RssAnon"], kb["RssFile"]
    except (OSError, KeyError, ValueError):
        return None


def run_one(args, corpus):
    """Trains on `corpus` while a thread samples each rank; the largest figure of each rank."""
    command = [os.path.join(ROOT, "scripts", "dpt-mpirun"), "-np", str(args.world), os.path.join(args.bin, "dptrain"),
               "train", "--model", "gpt", "--gpt-layers", "1", "--gpt-dim", "32", "--gpt-heads", "2", "--data", corpus,
               "--context", str(args.context), "--batch-size", str(args.batch), "--max-steps", str(args.steps),
               "--workers", str(args.workers), "--no-eval", "--metrics", "", "--log-every", "100"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    train_bin = os.path.join(corpus, "train.bin")
    peaks, stop = {}, threading.Event()

    def watch():
        while not stop.is_set():
            for rank, pid in ranks_of(corpus).items():
                got = sample(pid, train_bin)
                if got:
                    old = peaks.get(rank, (0,) * len(got))
                    peaks[rank] = tuple(max(a, b) for a, b in zip(old, got))
            stop.wait(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    start = time.perf_counter()
    watcher.start()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    stop.set()
    watcher.join()
    if done.returncode != 0:
        sys.exit(f"token_rss: {' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    summary = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("dptrain train:")]
    return {"seconds": time.perf_counter() - start, "summary": summary[-1] if summary else "",
            "ranks": {str(rank): {"rss_kb": p[0], "hwm_kb": p[1], "train_bin_resident_kb": p[2], "anon_kb": p[3],
                                  "file_kb": p[4]}
                      for rank, p in sorted(peaks.items())}}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["corpus_gb"] for r in results["runs"]]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for rank in results["runs"][0]["ranks"]:
        ax.plot(sizes, [r["ranks"][rank]["hwm_kb"] / 1024 for r in results["runs"]], "o-", label=f"rank {rank}: peak RSS")
        ax.plot(sizes, [r["ranks"][rank]["anon_kb"] / 1024 for r in results["runs"]], "s-", label=f"rank {rank}: anonymous")
        ax.plot(sizes, [r["ranks"][rank]["train_bin_resident_kb"] / 1024 for r in results["runs"]], "x--",
                label=f"rank {rank}: train.bin resident (largest sample)")
    ax.plot(sizes, [s * 1e9 / 2**20 for s in sizes], ":", color="gray", label="the corpus itself")
    ax.axvline(results["machine"]["memory_gb"], color="red", lw=0.8, label="the machine's memory")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)  # nothing here is negative: no mirrored half of the symlog axis
    ax.set_xlabel("train.bin (GB)")
    ax.set_ylabel("MiB per rank")
    ax.set_title(f"{results['world']} ranks, {results['steps']} steps of {results['batch']} windows of "
                 f"{results['context'] + 1} tokens")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(results):
    m = results["machine"]
    lines = ["# Resident memory per rank against the token corpus's size", "",
             f"`dpt-mpirun -np {results['world']} dptrain train --model gpt` (1 layer, width 32), {results['steps']} "
             f"steps of {results['batch']} windows of {results['context']} + 1 tokens per rank, --workers "
             f"{results['workers']}, random uint16 tokens; every rank's /proc sampled every 0.25 s (largest values).", "",
             f"Machine: {m['cpu_model']}, {m['logical_cores']} CPUs, {m['memory_gb']:.1f} GB of memory, torch "
             f"{m['torch_version']}, {m['utc_time']}.", "",
             "| train.bin | rank | peak RSS (VmHWM) | anonymous (RssAnon) | files mapped (RssFile) | train.bin resident "
             "| run |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for run in results["runs"]:
        for rank, r in run["ranks"].items():
            lines.append(f"| {run['corpus_gb']:g} GB | {rank} | {r['hwm_kb'] / 1024:.0f} MiB | {r['anon_kb'] / 1024:.0f} "
                         f"MiB | {r['file_kb'] / 1024:.0f} MiB | {r['train_bin_resident_kb']} kB | {run['seconds']:.0f} s |")
    return lines


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = {"benchmark": "token_rss", "machine": machine_info(torch), "world": args.world, "steps": args.steps,
               "context": args.context, "batch": args.batch, "workers": args.workers, "runs": []}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="token_rss.", dir=args.scratch) as scratch:
            corpus = os.path.join(scratch, "corpus")
            tokens = write_corpus(corpus, size)
            run = run_one(args, corpus)
        run.update(corpus_gb=size, tokens=tokens, windows=(tokens - 1) // args.context)
        results["runs"].append(run)
        print(f"{size:g} GB: " + ", ".join(f"rank {k} peak RSS {v['hwm_kb'] / 1024:.0f} MiB (anonymous "
                                           f"{v['anon_kb'] / 1024:.0f} MiB), train.bin resident "
                                           f"{v['train_bin_resident_kb']} kB" for k, v in run["ranks"].items()),
              flush=True)
    write_report(args.out, "token_rss", results, plot, table(results), "RSS per rank")
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
