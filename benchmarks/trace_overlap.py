#!/usr/bin/env python3
"""How much of DDP's communication a GPU ran while it was computing, read from a Kineto trace.

  python benchmarks/trace_overlap.py trace.json [--json out.json]

The trace is what `ddp_bench --device cuda --trace FILE` writes (torch.profiler's Chrome trace
format). Communication is every NCCL kernel, and every device->host copy (the MPI backend stages
each CUDA bucket through pinned host memory on a side stream as soon as the bucket is full);
compute is every other kernel. Device-to-device copies (gradients into buckets) and the
host->device copies of results (made when backward waits for them) are neither. For each
communication event the time during which some compute kernel also ran on the GPU counts as
overlapped:
  overlap = sum over communication events of |event interval ∩ union of compute intervals|
            / sum of communication event durations
A DDP that waited for each bucket before computing on would show an overlap near 0.
"""

import argparse
import json
import sys


def intervals_union(intervals):
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def covered(union, start, end):
    """Length of [start, end) covered by the sorted disjoint intervals `union`."""
    total = 0.0
    for a, b in union:
        if b <= start:
            continue
        if a >= end:
            break
        total += min(b, end) - max(a, start)
    return total


def analyze(trace):
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    gpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy") and e.get("dur")]
    is_comm = lambda e: "nccl" in e["name"].lower() or (e["cat"] == "gpu_memcpy" and "DtoH" in e["name"])  # noqa: E731
    comm = [e for e in gpu if is_comm(e)]
    compute = [e for e in gpu if e["cat"] == "kernel" and not is_comm(e)]
    union = intervals_union([(e["ts"], e["ts"] + e["dur"]) for e in compute])
    comm_us = sum(e["dur"] for e in comm)
    overlapped_us = sum(covered(union, e["ts"], e["ts"] + e["dur"]) for e in comm)
    return {
        "communication_events": len(comm),
        "communication_streams": sorted({str(e.get("tid")) for e in comm}),
        "compute_kernels": len(compute),
        "compute_streams": sorted({str(e.get("tid")) for e in compute}),
        "communication_us": comm_us,
        "overlapped_us": overlapped_us,
        "overlap_fraction": overlapped_us / comm_us if comm_us else None,
        "kinds": sorted({e["name"] if "nccl" in e["name"].lower() else e["cat"] + ": " + e["name"] for e in comm})[:12],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trace")
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    try:
        with open(args.trace) as f:
            result = analyze(json.load(f))
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"trace_overlap.py: error: {args.trace}: {e}")
    result["trace"] = args.trace
    text = json.dumps(result, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
