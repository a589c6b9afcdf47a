"""PyTorch's all-reduce over gloo by message size: the peer of build/bin/allreduce_bench in
benchmarks/cluster_bench.py. Launched under mpirun (rank and world size from Open MPI's variables,
MASTER_ADDR/MASTER_PORT from the caller); rank 0 writes one JSON document of rows
{bytes, time_s: {median, min}, algbw_gbps, busbw_gbps}.

    MASTER_ADDR=10.231.0.1 scripts/dpt-mpirun -np 2 python benchmarks/gloo_allreduce.py --json out.json
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import launched_rank  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="1,4,16,64")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    rank, world, _ = launched_rank() or (0, 1, 0)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=300))
    rows = []
    for mb in (float(s) for s in args.sizes_mb.split(",")):
        tensor = torch.ones(int(mb * 1024 * 1024 / 4))
        times = []
        for i in range(args.warmup + args.samples):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(tensor)
            elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the slowest rank's time
            if i >= args.warmup:
                times.append(elapsed.item())
        median = statistics.median(times)
        algbw = tensor.numel() * 4 / median / 1e9
        rows.append({"bytes": tensor.numel() * 4, "time_s": {"median": median, "min": min(times)},
                     "algbw_gbps": algbw, "busbw_gbps": algbw * 2 * (world - 1) / world})
    if rank == 0:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"benchmark": "gloo_allreduce", "world_size": world, "results": rows}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    dist.barrier()


if __name__ == "__main__":
    main()
