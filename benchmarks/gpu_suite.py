"""The GPU part of benchmarks/run_suite.py (--gpu): what issue-style questions about a GPU need.

  - NCCL all-reduce time and algorithm bandwidth by size on the GPUs there are (world size 1 on a
    one-GPU machine), and the MPI backend with CUDA tensors at world size 2 (staged through pinned
    memory unless MPI is CUDA-aware);
  - DDP's overhead at world size 1 against plain training on the same GPU, ResNet-18 and the MLP,
    beside PyTorch's own DDP and plain training on the same GPU, model and batch. The four
    configurations run alternated, `repeats` rounds in one process tree, and each figure is the
    median over rounds (one GPU, one noisy host: never compare numbers from different runs);
  - a Kineto trace of DDP training (ddp_bench --trace) over NCCL and over MPI at world size 2, and
    how much of the communication overlapped compute kernels (benchmarks/trace_overlap.py).
"""

import os

import trace_overlap

GPU_PLAN = {
    "resnet18": {"batch": 128, "steps": 40, "warmup": 10},
    "mlp": {"batch": 128, "steps": 200, "warmup": 30},
}


def _median_doc(docs):
    """The run whose samples/s is the median of `docs` (kept whole, so its step times go along)."""
    docs = sorted(docs, key=lambda d: d["results"]["samples_per_s"])
    return docs[len(docs) // 2]


def _ms(doc):
    return doc["results"]["step_time_s"]["median"] * 1e3


def overhead_rows(model, batch, runs):
    """Markdown rows: plain vs DDP for dptrain and PyTorch, from the median rounds."""
    rows = [f"### {model}, batch {batch}, world size 1", "",
            "| | dptrain samples/s | dptrain step (ms) | PyTorch samples/s | PyTorch step (ms) |",
            "|---|---:|---:|---:|---:|"]
    med = {key: _median_doc(docs) for key, docs in runs.items() if docs}
    fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    def cell(key):
        doc = med.get(key)
        return (fmt(doc["results"]["samples_per_s"]), fmt(_ms(doc), 3)) if doc else ("-", "-")
    for label, ours, theirs in (("plain training", "ours_plain", "torch_plain"), ("DDP", "ours_ddp", "torch_ddp")):
        (a, b), (c, d) = cell(ours), cell(theirs)
        rows.append(f"| {label} | {a} | {b} | {c} | {d} |")
    def overhead(ddp, plain):
        if ddp in med and plain in med:
            return (_ms(med[ddp]) / _ms(med[plain]) - 1) * 100
        return None
    rows.append(f"| DDP overhead (step time) | {fmt(overhead('ours_ddp', 'ours_plain'), 2)}% | | "
                f"{fmt(overhead('torch_ddp', 'torch_plain'), 2)}% | |")
    if "ours_ddp" in med and "torch_ddp" in med:
        ratio = med["ours_ddp"]["results"]["samples_per_s"] / med["torch_ddp"]["results"]["samples_per_s"]
        rows.append(f"| dptrain DDP / PyTorch DDP samples/s | {ratio:.3f}x | | | |")
    rounds = len(runs.get("ours_ddp", []))
    rows += ["", f"Medians of {rounds} alternated rounds; every round's samples/s: " + "; ".join(
        f"{key} " + ", ".join(f"{d['results']['samples_per_s']:.0f}" for d in docs) for key, docs in runs.items()), ""]
    summary = {
        "model": model, "batch": batch, "rounds": rounds,
        "ddp_overhead_pct": overhead("ours_ddp", "ours_plain"),
        "pytorch_ddp_overhead_pct": overhead("torch_ddp", "torch_plain"),
        "samples_per_s": {k: v["results"]["samples_per_s"] for k, v in med.items()},
    }
    return rows, summary


def run_gpu(suite, args, gpus, repeats=3):
    allreduce, ours, theirs, rows, summaries = {}, {}, {}, [], []
    n_gpus = min(args.max_world_size, gpus)
    if "allreduce" not in args.skip:
        allreduce = suite.allreduce(range(1, n_gpus + 1), backend="nccl", device="cuda")
        for n, doc in suite.allreduce([2], backend="mpi", device="cuda").items():
            allreduce[f"mpi-cuda-{n}"] = doc
    if "ddp" not in args.skip:
        rows += ["## DDP overhead and PyTorch side by side on one GPU", ""]
        for model in [m for m in GPU_PLAN if m in args.models]:
            plan = GPU_PLAN[model]
            if args.quick:
                plan = dict(plan, steps=max(5, plan["steps"] // 4))
            runs = {"ours_plain": [], "ours_ddp": [], "torch_plain": [], "torch_ddp": []}
            for round_index in range(repeats):
                tag = f"_r{round_index}"
                for key, run in (("ours_ddp", lambda: suite.ddp(model, [1], device="cuda", tag=tag, plan=plan)),
                                 ("ours_plain", lambda: suite.ddp(model, [1], device="cuda", extra=["--no-ddp"],
                                                                  tag="_noddp" + tag, plan=plan)),
                                 ("torch_ddp", lambda: suite.pytorch(model, [1], device="cuda", tag=tag, plan=plan)),
                                 ("torch_plain", lambda: suite.pytorch(model, [1], device="cuda", extra=["--no-ddp"],
                                                                       tag="_noddp" + tag, plan=plan))):
                    if key.startswith("torch") and "pytorch" in args.skip:
                        continue
                    result = run()
                    if result and 1 in result:
                        runs[key].append(result[1])
            if runs["ours_ddp"]:
                ours[model] = {1: _median_doc(runs["ours_ddp"])}
            if runs["torch_ddp"]:
                theirs[model] = {1: _median_doc(runs["torch_ddp"])}
            model_rows, summary = overhead_rows(model, plan["batch"], runs)
            rows += model_rows
            summaries.append(summary)
    if "trace" not in args.skip:
        rows += ["## Communication overlapping backward (GPU timeline)", "",
                 "Kineto traces of ResNet-18 DDP training (`ddp_bench --device cuda --trace`); "
                 "overlap = share of the communication's GPU time during which compute kernels also ran "
                 "(benchmarks/trace_overlap.py).", "",
                 "| backend | world size | communication events | communication time (us) | overlapped | what |",
                 "|---|---:|---:|---:|---:|---|"]
        for backend, n in (("nccl", 1), ("mpi", 2)):
            trace = os.path.join(suite.out, f"trace_resnet18_{backend}_np{n}.json")
            run_json = f"trace_resnet18_{backend}_np{n}_run.json"
            doc = suite.run(f"ddp_bench resnet18 --trace ({backend})", n,
                            [suite.binary("ddp_bench"), "--model", "resnet18", "--device", "cuda", "--backend", backend,
                             "--batch", "128", "--steps", "3", "--warmup", "5", "--quiet", "--trace", trace,
                             "--json", os.path.join(suite.out, run_json)], run_json)
            if doc and os.path.exists(trace):
                import json
                with open(trace) as f:
                    result = trace_overlap.analyze(json.load(f))
                with open(os.path.join(suite.out, f"overlap_{backend}_np{n}.json"), "w") as f:
                    json.dump(result, f, indent=1)
                frac = result["overlap_fraction"]
                what = ", ".join(result["kinds"][:3]) or ("no NCCL kernel: an in-place all-reduce over one rank moves "
                                                          "no data" if n == 1 else "none found")
                rows.append(f"| {backend} | {n} | {result['communication_events']} | {result['communication_us']:.0f} | "
                            f"{'-' if frac is None else f'{frac * 100:.1f}%'} | {what} |")
        rows.append("")
    return allreduce, ours, theirs, rows, summaries
