"""PyTorch's side of benchmarks/zero_bench.py: the same MLP, batch and Adam as build/bin/zero_bench, with
DDP + Adam ("torch_plain") or DDP + torch.distributed.optim.ZeroRedundancyOptimizer ("torch_zero1"), over
gloo. Launched by zero_bench.py under scripts/dpt-mpirun (rank and world size from Open MPI's variables);
rank 0 writes one JSON result with zero_bench's keys.

    scripts/dpt-mpirun -np 2 python benchmarks/zero_pytorch.py --mode torch_zero1 --json out.json
"""
import argparse
import datetime
import json
import os
import resource
import sys
import time

import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import launched_rank, machine_info  # noqa: E402


def state_bytes(optimizer):
    inner = optimizer.optim if isinstance(optimizer, ZeroRedundancyOptimizer) else optimizer
    return sum(t.numel() * t.element_size() for state in inner.state.values() for k, t in state.items()
               if torch.is_tensor(t) and k != "step")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("torch_plain", "torch_zero1"), required=True)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--master-port", type=int, default=29517)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    rank, world, _ = launched_rank() or (0, 1, 0)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.master_port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=300))

    torch.manual_seed(0)
    layers, width_in = [], 784
    for _ in range(args.layers):
        layers += [torch.nn.Linear(width_in, args.width), torch.nn.ReLU()]
        width_in = args.width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width_in, 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    parameters = sum(p.numel() for p in model.parameters())
    if args.mode == "torch_zero1":
        optimizer = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=torch.optim.Adam, lr=1e-4)
    else:
        optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 784)
    y = torch.randint(0, 10, (args.batch,))

    def one_step():
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(args.warmup):
        one_step()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        one_step()
    dist.barrier()
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # DDP's buckets hold a second copy of the gradient beside .grad (as dptrain's plain DDP).
    per_rank = torch.tensor([state_bytes(optimizer), rss, 2 * parameters * 4], dtype=torch.float64)
    dist.all_reduce(per_rank, op=dist.ReduceOp.MAX)
    if rank == 0:
        result = {"benchmark": "zero", "mode": args.mode, "world_size": world, "parameters": parameters,
                  "batch_per_rank": args.batch, "steps": args.steps,
                  "samples_per_s": args.steps * args.batch * world / seconds,
                  "optimizer_state_bytes_max_rank": per_rank[0].item(), "peak_rss_bytes_max_rank": per_rank[1].item(),
                  "gradient_bytes_max_rank": per_rank[2].item(), "machine": machine_info(torch)}
        with open(args.json + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    # Every rank leaves together; gloo's destroy_process_group was seen to hang two of four ranks
    # after the others had exited.
    dist.barrier()


if __name__ == "__main__":
    main()
