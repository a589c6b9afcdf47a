#!/usr/bin/env python3
"""Runs dptrain's benchmark suite and writes JSON results, PNG plots and a markdown summary.

  python benchmarks/run_suite.py                  # CPU suite, world sizes 1..2, ~5-10 min on 2 cores
  python benchmarks/run_suite.py --max-world-size 4 --quick
  python benchmarks/run_suite.py --gpu            # on a CUDA machine (see docs/benchmarks.md)

Binaries come from $DPTRAIN_BUILD/bin (default build/); multi-rank runs go through
scripts/dpt-mpirun. Results land in benchmarks/results/<date>-<host>/ (or --out), and the summary
is also copied to benchmarks/results/latest.md (CPU runs with the default --out only).

CPU suite, for world sizes 1..N:
  allreduce_bench    (N >= 2: ours vs raw MPI_Allreduce, 4 KB .. 256 MB)
  ddp_bench          (mlp, cnn, resnet18) and compare_pytorch.py (PyTorch DDP over gloo) side by side
  ddp_bench --trace  (mlp at world size N: a Chrome trace to open in Perfetto)
  preprocess_bench, dp_bench (world size 1; they are single-process benchmarks)
GPU suite (--gpu): allreduce over NCCL (world size 1..GPUs) and over MPI with CUDA tensors
  (world size 2), ResNet-18 DDP vs plain single-GPU training, compare_pytorch.py on CUDA (NCCL).
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_suite  # noqa: E402
import gpu_suite  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PYTHON = os.path.expanduser("~/.cache/dptrain/torch-2.11.0/bin/python")

# Per-model batch and steps: enough steps for a stable median, small enough for the 10-minute suite.
MODEL_PLAN = {
    "mlp": {"batch": 64, "steps": 60, "warmup": 5},
    "cnn": {"batch": 64, "steps": 20, "warmup": 3},
    "resnet18": {"batch": 16, "steps": 6, "warmup": 2},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.environ.get("DPTRAIN_BUILD", os.path.join(ROOT, "build")),
                   help="build directory holding bin/ (default $DPTRAIN_BUILD or build/)")
    p.add_argument("--python", default=os.environ.get("DPTRAIN_PYTHON", DEFAULT_PYTHON),
                   help="python with torch for compare_pytorch.py")
    p.add_argument("--max-world-size", type=int, default=2, help="run world sizes 1..N")
    p.add_argument("--models", default="mlp,cnn,resnet18")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    p.add_argument("--gpu", action="store_true", help="the GPU suite (NCCL, CUDA tensors, ResNet-18)")
    p.add_argument("--quick", action="store_true", help="fewer sizes and steps (a smoke run)")
    p.add_argument("--skip", default="", help="comma list of: allreduce,ddp,pytorch,trace,preprocess,dp,data")
    p.add_argument("--out", default="", help="result directory (default benchmarks/results/<date>-<host>)")
    p.add_argument("--mpi-spin", action="store_true",
                   help="keep OpenMPI's default busy polling (by default the suite sets "
                        "OMPI_MCA_mpi_yield_when_idle=1: waiting ranks yield the core; see docs/benchmarks.md)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per benchmark process")
    args = p.parse_args(argv)
    if args.max_world_size < 1:
        p.error(f"--max-world-size must be >= 1, got {args.max_world_size}")
    unknown = set(filter(None, args.models.split(","))) - set(MODEL_PLAN)
    if unknown:
        p.error(f"--models: unknown {sorted(unknown)}; choose from {sorted(MODEL_PLAN)}")
    args.build = os.path.abspath(args.build)
    args.models = [m for m in args.models.split(",") if m]
    args.skip = set(filter(None, args.skip.split(",")))
    bad = args.skip - {"allreduce", "ddp", "pytorch", "trace", "preprocess", "dp", "data"}
    if bad:
        p.error(f"--skip: unknown {sorted(bad)}")
    return args


class Suite:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.join(args.build, "bin")
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        self.default_out = not args.out
        self.out = args.out or os.path.join(ROOT, "benchmarks", "results", f"{date}-{socket.gethostname()}")
        os.makedirs(self.out, exist_ok=True)
        self.log_path = os.path.join(self.out, "suite.log")
        self.log = open(self.log_path, "w")
        self.failures = []
        self.env = dict(os.environ)
        self.env.setdefault("DPTRAIN_LOG_LEVEL", "warn")
        self.env.setdefault("DPTRAIN_DEBUG", "off")
        self.env["OMP_NUM_THREADS"] = str(args.threads)
        # A rank waiting in MPI spins on shared memory by default. With as many ranks as cores (and
        # DDP's progress thread beside the compute thread) the spinning steals the very core the
        # peer needs; yielding measured 2x faster DDP on the 2-core machine. User's value wins.
        if not args.mpi_spin:
            self.env.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
        self.mpi_yield = self.env.get("OMPI_MCA_mpi_yield_when_idle", "0 (OpenMPI default)")

    def binary(self, name):
        path = os.path.join(self.bin, name)
        if not os.access(path, os.X_OK):
            sys.exit(f"run_suite.py: error: {path} not found: build it first "
                     f"(DPTRAIN_BUILD={self.args.build} bash scripts/build.sh) or pass --build")
        return path

    def launch(self, world_size, command):
        if world_size == 1:
            return command
        return [os.path.join(ROOT, "scripts", "dpt-mpirun"), "-np", str(world_size)] + command

    def run(self, label, world_size, command, json_name):
        """Runs one benchmark; returns its parsed JSON or None (failure recorded, suite goes on)."""
        json_path = os.path.join(self.out, json_name)
        full = self.launch(world_size, command)
        print(f"[suite] {label} (np {world_size})", flush=True)
        self.log.write(f"\n$ {' '.join(full)}\n")
        self.log.flush()
        start = time.time()
        try:
            done = subprocess.run(full, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=self.args.timeout, cwd=ROOT)
            output, code = done.stdout, done.returncode
        except subprocess.TimeoutExpired as e:
            output, code = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
        self.log.write(output)
        self.log.write(f"[exit {code}, {time.time() - start:.1f} s]\n")
        self.log.flush()
        if code != 0 or not os.path.exists(json_path):
            self.failures.append(f"{label} (np {world_size}): exit {code}, see {os.path.relpath(self.log_path, ROOT)}")
            print(f"[suite]   FAILED: exit {code}", flush=True)
            return None
        with open(json_path) as f:
            return json.load(f)

    # --- the benchmarks --------------------------------------------------------------------
    def allreduce(self, world_sizes, backend="mpi", device="cpu"):
        results = {}
        max_bytes, step, iters = ("16M", 4, 5) if self.args.quick else ("256M", 4, 10)
        for n in world_sizes:
            name = f"allreduce_{backend}_{device}_np{n}.json"
            doc = self.run(f"allreduce_bench {backend} {device}", n,
                           [self.binary("allreduce_bench"), "--backend", backend, "--device", device,
                            "--min-bytes", "4K", "--max-bytes", max_bytes, "--step-factor", str(step),
                            "--iters", str(iters), "--warmup", "3", "--threads", str(self.args.threads),
                            "--json", os.path.join(self.out, name)], name)
            if doc:
                results[n] = doc
        return results

    def ddp(self, model, world_sizes, device="cpu", backend=None, extra=(), tag="", plan=None):
        explicit = plan is not None
        plan = dict(plan or MODEL_PLAN[model])
        if self.args.quick and not explicit:
            plan["steps"] = max(3, plan["steps"] // 4)
        results = {}
        for n in world_sizes:
            name = f"ddp_{model}_{device}{tag}_np{n}.json"
            command = [self.binary("ddp_bench"), "--model", model, "--batch", str(plan["batch"]),
                       "--steps", str(plan["steps"]), "--warmup", str(plan["warmup"]),
                       "--threads", str(self.args.threads), "--device", device,
                       "--json", os.path.join(self.out, name)] + list(extra)
            if backend:
                command += ["--backend", backend]
            doc = self.run(f"ddp_bench {model} {device}{tag}", n, command, name)
            if doc:
                results[n] = doc
        return results

    def pytorch(self, model, world_sizes, device="cpu", extra=(), tag="", plan=None):
        explicit = plan is not None
        plan = dict(plan or MODEL_PLAN[model])
        if self.args.quick and not explicit:
            plan["steps"] = max(3, plan["steps"] // 4)
        results = {}
        for n in world_sizes:
            name = f"pytorch_{model}_{device}{tag}_np{n}.json"
            command = [self.args.python, os.path.join(ROOT, "benchmarks", "compare_pytorch.py"), "--model", model,
                       "--batch", str(plan["batch"]), "--steps", str(plan["steps"]), "--warmup", str(plan["warmup"]),
                       "--threads", str(self.args.threads), "--device", device, "--quiet",
                       "--json", os.path.join(self.out, name)] + list(extra)
            doc = self.run(f"compare_pytorch {model} {device}{tag}", n, command, name)
            if doc:
                results[n] = doc
        return results

    def preprocess(self):
        if not os.access(os.path.join(self.bin, "preprocess_bench"), os.X_OK):
            return None
        samples = "512" if self.args.quick else "2048"
        return self.run("preprocess_bench", 1, [self.binary("preprocess_bench"), "--workers", "0,1,2,4",
                                                 "--samples", samples, "--repeats", "2",
                                                 "--out", os.path.join(self.out, "preprocess.json")], "preprocess.json")

    def dp(self):
        if not os.access(os.path.join(self.bin, "dp_bench"), os.X_OK):
            return None
        devices = "cuda:0" if self.args.gpu else ",".join(["cpu"] * max(2, self.args.max_world_size))
        return self.run("dp_bench", 1, [self.binary("dp_bench"), "--devices", devices, "--batch", "256",
                                         "--steps", "5" if self.args.quick else "15",
                                         "--threads", str(self.args.threads),
                                         "--out", os.path.join(self.out, "dp.json")], "dp.json")


# --- plots -----------------------------------------------------------------------------------
def plot_allreduce(allreduce, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for n, doc in sorted(allreduce.items(), key=lambda kv: str(kv[0])):
        rows = [r for r in doc["results"] if "ours" in r]
        sizes = [r["bytes"] for r in rows]
        ax.plot(sizes, [r["ours"]["busbw_gbps"] for r in rows], "o-", label=f"dptrain {doc['backend']} np{n}")
        if rows and "ours_nocheck" in rows[0]:
            ax.plot(sizes, [r["ours_nocheck"]["busbw_gbps"] for r in rows], "x:", label=f"dptrain, no check np{n}")
        if rows and "raw_mpi" in rows[0]:
            ax.plot(sizes, [r["raw_mpi"]["busbw_gbps"] for r in rows], "k--", label=f"raw MPI_Allreduce np{n}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("bus bandwidth (GB/s)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_ddp(ours, theirs, throughput_path, scaling_path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig1, ax1 = plt.subplots(figsize=(7, 4.2))
    fig2, ax2 = plt.subplots(figsize=(7, 4.2))
    colors = {"mlp": "tab:blue", "cnn": "tab:orange", "resnet18": "tab:green"}  # one colour per model
    for model in [m for m in MODEL_PLAN if m in ours or m in theirs]:
        for label, runs, style in (("dptrain", ours.get(model, {}), "o-"), ("PyTorch", theirs.get(model, {}), "s--")):
            if not runs:
                continue
            ns = sorted(runs)
            rates = [runs[n]["results"]["samples_per_s"] for n in ns]
            ax1.plot(ns, rates, style, color=colors.get(model), label=f"{model} {label}")
            if 1 in runs:
                base = runs[1]["results"]["samples_per_s"]
                ax2.plot(ns, [r / (n * base) * 100 for n, r in zip(ns, rates)], style, color=colors.get(model),
                         label=f"{model} {label}")
    ax1.set_xlabel("world size (ranks)")
    ax1.set_ylabel("samples/s (all ranks)")
    ax1.set_yscale("log")
    ax1.set_title(title + ": throughput")
    ax2.set_xlabel("world size (ranks)")
    ax2.set_ylabel("weak-scaling efficiency (%)")
    ax2.axhline(90, color="grey", lw=0.8, ls=":")
    ax2.set_ylim(0, 110)
    ax2.set_title(title + ": weak scaling (per-rank batch fixed)")
    for ax, fig, path in ((ax1, fig1, throughput_path), (ax2, fig2, scaling_path)):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)


def plot_preprocess(doc, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = doc["results"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot([r["workers"] for r in rows], [r["samples_per_s"] for r in rows], "o-")
    ax.set_xlabel("preprocessing workers (0 = inline)")
    ax.set_ylabel("samples/s")
    ax.set_title("DataLoader + PreprocessPool")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- summary ---------------------------------------------------------------------------------
def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def machine_lines(doc):
    m = doc.get("machine", {})
    threads = doc.get("threads", {})
    return [
        f"- host `{m.get('hostname')}`: {m.get('cpu_model')}, {m.get('logical_cores')} logical cores "
        f"({m.get('cores_available')} available), {fmt(m.get('memory_gib'))} GiB"
        + (f", GPU {m['gpu_model']}" if m.get("gpu_model") else ""),
        f"- libtorch {m.get('torch_version')}, {m.get('mpi_library')}, dptrain {m.get('dptrain_version')}",
        f"- threads per rank: intra-op {threads.get('intra_op_threads')}, inter-op {threads.get('inter_op_threads')}, "
        f"OMP_NUM_THREADS={threads.get('OMP_NUM_THREADS')}",
        f"- measured {m.get('utc_time')}; 1-minute load average when the run ended: {fmt(m.get('load_average_1m'), 2)}",
    ]


def summary(suite, allreduce, ours, theirs, extra_rows, preprocess, dp, rel):
    lines = [f"# dptrain benchmarks ({'GPU' if suite.args.gpu else 'CPU'} suite)", ""]
    if suite.args.quick:
        lines += ["**A smoke run (`--quick`)**: a quarter of the steps, small messages, one run of each: it shows that",
                  "every benchmark works, not how fast. Its ratios swing far more than the full suite's (a 3-step",
                  "DDP run is mostly warm-up); quote only the full suite (`python benchmarks/run_suite.py`).", ""]
    any_doc = next(iter(allreduce.values()), None) or next((d for r in ours.values() for d in r.values()), None)
    if any_doc:
        lines += ["## Machine", ""] + machine_lines(any_doc) + [""]
    lines.insert(len(lines) - 1 if any_doc else len(lines),
                 f"- OpenMPI waiting policy: OMPI_MCA_mpi_yield_when_idle={suite.mpi_yield}")
    lines += [f"Raw results, plots and the log: [`{rel}/`]({rel}/). Regenerate with "
              f"`python benchmarks/run_suite.py{' --gpu' if suite.args.gpu else ''}` (docs/benchmarks.md explains every number).", ""]
    targets = []
    if allreduce:
        lines += ["## All-reduce", "", f"![busbw]({rel}/allreduce_busbw.png)", ""]
        for n, doc in sorted(allreduce.items(), key=lambda kv: str(kv[0])):
            has_raw = any("raw_mpi" in r for r in doc["results"])
            lines += [f"{doc['backend']} on {doc['device']}, world size {n} (busbw = algbw x 2(n-1)/n, GB/s; "
                      f"times are medians, max over ranks):", "",
                      "| size | ours time (us) | ours busbw | without check (us) | raw MPI time (us) | raw busbw | ours/raw "
                      "| ours/raw, best samples |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|"]
            in_range, in_range_best = [], []
            for r in doc["results"]:
                size = r["bytes"]
                label = f"{size >> 20} MB" if size >= 1 << 20 else f"{size >> 10} KB"
                ratio = r.get("ours_over_raw")
                if has_raw and ratio is not None and (1 << 20) <= size <= (64 << 20):
                    in_range.append(ratio)
                lines.append(f"| {label} | {fmt(r['ours']['time_s']['median'] * 1e6)} | {fmt(r['ours']['busbw_gbps'], 3)} | "
                             f"{fmt(r['ours_nocheck']['time_s']['median'] * 1e6) if 'ours_nocheck' in r else '-'} | "
                             f"{fmt(r['raw_mpi']['time_s']['median'] * 1e6) if 'raw_mpi' in r else '-'} | "
                             f"{fmt(r['raw_mpi']['busbw_gbps'], 3) if 'raw_mpi' in r else '-'} | {fmt(ratio, 3)} | "
                             f"{fmt(r.get('ours_over_raw_best'), 3)} |")
                if has_raw and r.get("ours_over_raw_best") is not None and (1 << 20) <= size <= (64 << 20):
                    in_range_best.append(r["ours_over_raw_best"])
            lines.append("")
            if in_range and doc["device"] == "cpu":
                worst = min(in_range)
                best = min(in_range_best) if in_range_best else None
                targets.append(f"| all-reduce busbw >= 95% of raw MPI, 1-64 MB, np {n} | worst ratio of medians {worst:.3f}, "
                               f"of best samples {fmt(best, 3)} | {'met' if worst >= 0.95 else 'NOT met'} |")
    if ours or theirs:
        lines += ["## DDP training throughput", "",
                  f"![throughput]({rel}/ddp_throughput.png) ![scaling]({rel}/ddp_scaling.png)", "",
                  "Weak scaling: per-rank batch fixed; efficiency(n) = samples/s(n) / (n x samples/s(1)).", "",
                  "| model | np | batch/rank | dptrain samples/s | PyTorch samples/s | ours/PyTorch | dptrain eff. | PyTorch eff. "
                  "| step (ms) | fwd | bwd | exposed comm (ms) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for model in [m for m in MODEL_PLAN if m in ours or m in theirs]:
            o, t = ours.get(model, {}), theirs.get(model, {})
            for n in sorted(o.keys() | t.keys()):
                rate_o = o[n]["results"]["samples_per_s"] if n in o else None
                rate_t = t[n]["results"]["samples_per_s"] if n in t else None
                eff_o = rate_o / (n * o[1]["results"]["samples_per_s"]) if rate_o and 1 in o else None
                eff_t = rate_t / (n * t[1]["results"]["samples_per_s"]) if rate_t and 1 in t else None
                res = o[n]["results"] if n in o else {}
                med = lambda k: res[k]["median"] * 1e3 if res.get(k) else None  # noqa: E731
                batch = (o.get(n) or t.get(n))["batch_per_rank"]
                lines.append(f"| {model} | {n} | {batch} | {fmt(rate_o)} | {fmt(rate_t)} | "
                             f"{fmt(rate_o / rate_t if rate_o and rate_t else None, 2)} | "
                             f"{fmt(eff_o * 100 if eff_o else None)}% | {fmt(eff_t * 100 if eff_t else None)}% | "
                             f"{fmt(med('step_time_s'), 2)} | {fmt(med('forward_s'), 2)} | {fmt(med('backward_s'), 2)} | "
                             f"{fmt(med('exposed_comm_s'), 2)} |")
                if model == "mlp" and n == 2 and rate_o and rate_t:
                    targets.append(f"| DDP MLP np 2 >= 1.3x PyTorch DDP samples/s | {rate_o / rate_t:.2f}x | "
                                   f"{'met' if rate_o / rate_t >= 1.3 else 'NOT met'} |")
                if model == "mlp" and n == 2 and eff_o:
                    targets.append(f"| weak-scaling efficiency np 2 >= 90% (MLP) | {eff_o * 100:.1f}% "
                                   f"(PyTorch {fmt(eff_t * 100 if eff_t else None)}%) | {'met' if eff_o >= 0.9 else 'NOT met'} |")
        lines.append("")
    lines += extra_rows
    if preprocess:
        lines += ["## Preprocessing pool", "", f"![preprocess]({rel}/preprocess.png)", "",
                  "| workers | samples/s | speedup |", "|---:|---:|---:|"]
        lines += [f"| {r['workers']} | {fmt(r['samples_per_s'])} | {fmt(r.get('speedup'), 2)} |" for r in preprocess["results"]]
        lines.append("")
    if dp:
        lines += ["## DataParallel (one process)", "", "| mode | replicas | samples/s |", "|---|---:|---:|"]
        lines += [f"| {r.get('mode')} | {r.get('replicas')} | {fmt(r.get('samples_per_s'))} |" for r in dp["results"]]
        lines.append("")
    if targets:
        lines = lines[:2] + ["## Targets", "", "| target | reached | |", "|---|---|---|"] + targets + [""] + lines[2:]
    if suite.failures:
        lines += ["## Failed runs", ""] + [f"- {f}" for f in suite.failures] + [""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    suite = Suite(args)
    started = time.time()
    allreduce, ours, theirs, extra_rows, preprocess, dp = {}, {}, {}, [], None, None
    n_max = args.max_world_size
    if not args.gpu:
        if "allreduce" not in args.skip and n_max >= 2:
            allreduce = suite.allreduce(range(2, n_max + 1))
        for model in args.models:
            if "ddp" not in args.skip:
                ours[model] = suite.ddp(model, range(1, n_max + 1), backend="mpi")
            if "pytorch" not in args.skip:
                theirs[model] = suite.pytorch(model, range(1, n_max + 1))
        if "trace" not in args.skip and "mlp" in args.models:
            trace = os.path.join(suite.out, f"trace_mlp_np{n_max}.json")
            suite.run("ddp_bench mlp --trace", n_max,
                      [suite.binary("ddp_bench"), "--model", "mlp", "--steps", "5", "--warmup", "3", "--quiet",
                       "--threads", str(args.threads), "--trace", trace,
                       "--json", os.path.join(suite.out, "trace_run.json")], "trace_run.json")
    else:
        gpus = 0
        try:
            gpus = int(subprocess.run([args.python, "-c", "import torch; print(torch.cuda.device_count())"],
                                      capture_output=True, text=True, timeout=120).stdout.strip() or 0)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        if gpus == 0:
            sys.exit("run_suite.py: error: --gpu but no CUDA device is visible to torch")
        allreduce, ours, theirs, extra_rows, gpu_summaries = gpu_suite.run_gpu(suite, args, gpus)
        with open(os.path.join(suite.out, "gpu_summary.json"), "w") as f:
            json.dump(gpu_summaries, f, indent=1)
    if "preprocess" not in args.skip:
        preprocess = suite.preprocess()
    if "data" not in args.skip and not args.gpu:
        extra_rows += data_suite.run_data(suite)
    if "dp" not in args.skip:
        dp = suite.dp()

    # Plots and summary (the allreduce plot keys are world sizes or labels).
    if allreduce:
        plot_allreduce(allreduce, os.path.join(suite.out, "allreduce_busbw.png"),
                       "all-reduce bus bandwidth" + (" (GPU)" if args.gpu else " (CPU, MPI)"))
    if any(ours.values()) or any(theirs.values()):
        plot_ddp({k: v for k, v in ours.items() if v}, {k: v for k, v in theirs.items() if v},
                 os.path.join(suite.out, "ddp_throughput.png"), os.path.join(suite.out, "ddp_scaling.png"),
                 "DDP " + ("GPU" if args.gpu else "CPU"))
    if preprocess:
        plot_preprocess(preprocess, os.path.join(suite.out, "preprocess.png"))
    numeric_allreduce = {k: v for k, v in allreduce.items() if isinstance(k, int)}
    named = {k: v for k, v in allreduce.items() if not isinstance(k, int)}
    text_allreduce = dict(numeric_allreduce)
    for key, doc in named.items():
        text_allreduce[key] = doc
    rel_dir = os.path.relpath(suite.out, os.path.join(ROOT, "benchmarks", "results"))
    text = summary(suite, text_allreduce, {k: v for k, v in ours.items() if v},
                   {k: v for k, v in theirs.items() if v}, extra_rows, preprocess, dp, ".")
    text += f"\nSuite wall time: {time.time() - started:.0f} s.\n"
    with open(os.path.join(suite.out, "summary.md"), "w") as f:
        f.write(text)
    if suite.default_out and not args.gpu:
        latest = summary(suite, text_allreduce, {k: v for k, v in ours.items() if v},
                         {k: v for k, v in theirs.items() if v}, extra_rows, preprocess, dp, rel_dir)
        with open(os.path.join(ROOT, "benchmarks", "results", "latest.md"), "w") as f:
            f.write(latest + f"\nSuite wall time: {time.time() - started:.0f} s.\n")
    print(f"[suite] done in {time.time() - started:.0f} s: {suite.out}/summary.md"
          + (f"; {len(suite.failures)} failed run(s)" if suite.failures else ""))
    return 1 if suite.failures else 0


if __name__ == "__main__":
    sys.exit(main())
