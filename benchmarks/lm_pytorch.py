#!/usr/bin/env python3
"""PyTorch's own eager DDP training of examples/gpt.py on a token corpus: the peer of
`dptrain train --model gpt` in benchmarks/lm_bench.py.

What a PyTorch user writes for it, nothing tuned: the corpus memory-mapped (train.bin, dtype from
meta.json), non-overlapping windows of --context + 1 tokens (dptrain's layout) in a permutation per
epoch dealt over the ranks, DistributedDataParallel (gloo on the CPU, NCCL on CUDA), AdamW (betas
0.9, 0.95, weight decay 0.1, foreach on CUDA as torch picks it), bf16 through torch.autocast when
--precision bf16. Every --log-every steps rank 0 writes {"type": "step", "step", "elapsed_s"} to
--metrics, the fields of dptrain's metrics file the benchmark reads.

    scripts/dpt-mpirun -np 2 python benchmarks/lm_pytorch.py --data DIR --context 128 --batch 8 \\
        --steps 60 --metrics torch.jsonl
"""
import argparse
import datetime
import json
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "examples"), os.path.join(ROOT, "python")]
from compare_pytorch import launched_rank  # noqa: E402  (mpirun / torchrun variables)
from gpt import GPT  # noqa: E402  (the built-in GPT's architecture, in PyTorch)
from dptrain_order import rank_windows  # noqa: E402  (the windows dptrain reads, in its order)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="directory with train.bin (and meta.json)")
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=8, help="windows per rank per step")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics", required=True, help="JSON lines to write (rank 0)")
    return p.parse_args(argv)


def corpus(directory):
    meta_path = os.path.join(directory, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    tokens = np.memmap(os.path.join(directory, "train.bin"), dtype=np.dtype(meta.get("dtype", "uint16")), mode="r")
    return tokens, meta.get("vocab_size", int(tokens.max()) + 1)


def main(argv=None):
    args = parse_args(argv)
    rank, world, local_rank = launched_rank() or (0, 1, 0)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1)) if args.device == "cuda" \
        else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=300))
    tokens, vocab = corpus(args.data)
    windows = (len(tokens) - 1) // args.context
    torch.manual_seed(args.seed)
    model = GPT(vocab, args.context, args.dim, args.heads, args.layers).to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    per_epoch = windows // (world * args.batch)
    log = open(args.metrics, "w") if rank == 0 else None
    dist.barrier()
    start = time.perf_counter()
    mine_of_epoch = {}
    for step in range(1, args.steps + 1):
        epoch, k = divmod(step - 1, per_epoch)
        if epoch not in mine_of_epoch:  # this rank's windows of the epoch, in dptrain's order
            mine_of_epoch = {epoch: rank_windows(windows, args.seed, epoch, rank, world, args.batch).tolist()}
        mine = mine_of_epoch[epoch][k * args.batch:(k + 1) * args.batch]
        rows = np.stack([tokens[w * args.context:w * args.context + args.context + 1] for w in mine]).astype(np.int64)
        batch = torch.from_numpy(rows).to(device)
        x, y = batch[:, :-1], batch[:, 1:]
        with autocast:
            loss = F.cross_entropy(ddp(x).reshape(-1, vocab), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.log_every == 0:
            value = loss.item()  # a host sync, as dptrain's log interval has
            if log:
                log.write(json.dumps({"type": "step", "step": step, "loss": value,
                                      "elapsed_s": time.perf_counter() - start}) + "\n")
    if log:
        log.close()
    dist.barrier()
    # No interpreter teardown: gloo's threads, destroyed without destroy_process_group(), sometimes
    # abort a finished process (benchmarks/compare_pytorch.py says more).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
