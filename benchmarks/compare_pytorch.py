#!/usr/bin/env python3
"""PyTorch's own DistributedDataParallel on the models of ddp_bench, for a side-by-side ratio.

Runs the same model (same architecture and parameter count as dptrain's model zoo), the same
synthetic batch, the same optimizer (SGD, lr 0.01, momentum 0.9) and the same thread count as
`ddp_bench`, and writes the same JSON shape, so benchmarks/run_suite.py can put both in one table.

Launch it any of three ways:
  scripts/dpt-mpirun -np 2 python benchmarks/compare_pytorch.py ...   (reads OMPI_COMM_WORLD_*)
  torchrun --nproc-per-node 2 benchmarks/compare_pytorch.py ...       (reads RANK / WORLD_SIZE)
  python benchmarks/compare_pytorch.py --world-size 2 ...             (spawns its own processes)
Backend: gloo on CPU, NCCL on CUDA (one GPU per rank, by local rank).

What is timed per step (each rank, then the max over ranks per step):
  forward   - model(x) and the loss
  backward  - loss.backward(), which in PyTorch DDP includes waiting for the last bucket's
              all-reduce (DDP's autograd hooks finish inside backward), so PyTorch's exposed
              communication time is not separable here and is reported as null
  optimizer - optimizer.step()
samples/s = world_size * batch_per_rank * steps / (wall time of the timed steps, max over ranks).
"""

import argparse
import datetime
import json
import os
import platform
import socket
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mlp", choices=["mlp", "cnn", "resnet18"])
    p.add_argument("--batch", type=int, default=64, help="samples per rank per step")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--backend", default=None, help="gloo (CPU default) or nccl (CUDA default)")
    p.add_argument("--no-ddp", action="store_true", help="plain single-process training, no DDP wrapper")
    p.add_argument("--bucket-cap-mb", type=float, default=25.0, help="DDP bucket_cap_mb (PyTorch default 25)")
    p.add_argument("--powersgd-rank", type=int, default=0,
                   help="DDP's gradients through torch's powerSGD_hook of this rank from the first timed step (0: off)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"],
                   help="sgd (lr 0.01, momentum 0.9) or adamw (lr 1e-3, weight decay 0.01), as ddp_bench")
    p.add_argument("--overlap-optimizer", action="store_true",
                   help="DDP._register_fused_optim: each bucket's parameters stepped as its all-reduce ends")
    p.add_argument("--world-size", type=int, default=None,
                   help="spawn this many processes (when not launched by mpirun/torchrun)")
    p.add_argument("--master-port", type=int, default=29517)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="write results here ('-' = stdout)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    for name in ("batch", "steps", "threads"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be > 0, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.overlap_optimizer and (args.no_ddp or args.powersgd_rank > 0):
        p.error("--overlap-optimizer needs DDP and no comm hook (PyTorch's fused optimizer is one)")
    if args.backend is None:
        args.backend = "nccl" if args.device == "cuda" else "gloo"
    return args


# ddp_bench's optimizers (benchmarks/ddp_bench.cpp optimizer_options), by --optimizer.
OPTIMIZERS = {
    "sgd": lambda torch: (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    "adamw": lambda torch: (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
}
OPTIMIZER_TEXT = {"sgd": "sgd lr 0.01 momentum 0.9", "adamw": "adamw lr 1e-3 weight decay 0.01"}


def launched_rank():
    """(rank, world_size, local_rank) from mpirun or torchrun variables, or None."""
    env = os.environ
    if "OMPI_COMM_WORLD_RANK" in env:
        return (int(env["OMPI_COMM_WORLD_RANK"]), int(env["OMPI_COMM_WORLD_SIZE"]),
                int(env.get("OMPI_COMM_WORLD_LOCAL_RANK", env["OMPI_COMM_WORLD_RANK"])))
    if "PMI_RANK" in env:
        return int(env["PMI_RANK"]), int(env["PMI_SIZE"]), int(env.get("MPI_LOCALRANKID", env["PMI_RANK"]))
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"]))
    return None


def build_model(name, torch):
    """The architectures of dptrain's model zoo (trainers/src/models/model_zoo.cpp), as eager modules."""
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 10)), (1, 28, 28)
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(),
                             nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10)), (1, 28, 28)

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.shortcut is None else self.shortcut(x)
            return torch.relu(out + identity)

    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for stage, width in enumerate([64, 128, 256, 512]):
        for index in range(2):
            layers.append(BasicBlock(cin, width, 2 if stage > 0 and index == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers), (3, 32, 32)


def summarize(values):
    import statistics
    if not values:
        return {"count": 0, "median": 0, "p10": 0, "p90": 0, "mean": 0, "min": 0, "max": 0}
    s = sorted(values)

    def pct(q):  # linear interpolation, numpy's default (as benchmarks/common/stats.cpp)
        pos = q / 100 * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return {"count": len(s), "median": pct(50), "p10": pct(10), "p90": pct(90),
            "mean": statistics.fmean(s), "min": s[0], "max": s[-1]}


def write_report(out, stem, results, plot, lines, image_title):
    """A benchmark's three files in `out`: stem.json (results), stem.png (plot(results, path)) and
    stem.md (`lines` with the plot under them). JSON and Markdown are written to a temporary file
    and renamed, so an interrupted run leaves the previous report whole."""
    def atomic_write(name, text):
        path = os.path.join(out, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)

    atomic_write(f"{stem}.json", json.dumps(results, indent=1))
    plot(results, os.path.join(out, f"{stem}.png"))
    atomic_write(f"{stem}.md", "\n".join(list(lines) + ["", f"![{image_title}]({stem}.png)"]) + "\n")


def machine_info(torch):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"hostname": socket.gethostname(), "cpu_model": cpu, "logical_cores": os.cpu_count(),
            "cores_available": len(os.sched_getaffinity(0)), "torch_version": torch.__version__,
            "python": platform.python_version(),
            "utc_time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "load_average_1m": os.getloadavg()[0],
            "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9}
    if info["cuda_devices"]:
        info["gpu_model"] = torch.cuda.get_device_name(0)
    return info


def worker(rank, world_size, local_rank, args):
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("compare_pytorch.py: error: --device cuda but no CUDA device is visible")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")

    use_ddp = not args.no_ddp
    if use_ddp:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(args.master_port))
        dist.init_process_group(args.backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=120))

    torch.manual_seed(args.seed)
    model, shape = build_model(args.model, torch)
    model = model.to(device)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    net = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_cap_mb) if use_ddp else model
    if use_ddp and args.powersgd_rank > 0:
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=args.powersgd_rank,
                                            start_powerSGD_iter=max(args.warmup, 2))
        net.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    optimizer_class, optimizer_kwargs = OPTIMIZERS[args.optimizer](torch)
    optimizer = None
    if args.overlap_optimizer:
        net._register_fused_optim(optimizer_class, **optimizer_kwargs)  # steps inside backward
    else:
        optimizer = optimizer_class(net.parameters(), **optimizer_kwargs)
    generator = torch.Generator().manual_seed(args.seed + rank)
    x = torch.randn((args.batch,) + shape, generator=generator).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=generator).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    forward, backward, opt, step = [], [], [], []
    net.train()
    if use_ddp:
        dist.barrier()
    for iteration in range(args.warmup + args.steps):
        if iteration == args.warmup:
            sync()
            if use_ddp:
                dist.barrier()
            wall_start = time.perf_counter()
        t0 = time.perf_counter()
        (optimizer or net).zero_grad(set_to_none=True)  # the fused optimizer leaves .grad as the module's
        loss = F.cross_entropy(net(x), y)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        if optimizer is not None:
            optimizer.step()
        sync()
        t3 = time.perf_counter()
        if iteration >= args.warmup:
            forward.append(t1 - t0)
            backward.append(t2 - t1)
            opt.append(t3 - t2)
            step.append(t3 - t0)
    wall = time.perf_counter() - wall_start

    timings = torch.tensor([wall] + forward + backward + opt + step, dtype=torch.float64)
    if use_ddp and world_size > 1:
        t = timings.to(device) if args.backend == "nccl" else timings
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        timings = t.cpu()
    values = timings.tolist()
    wall, n = values[0], args.steps
    forward, backward, opt, step = (values[1 + i * n:1 + (i + 1) * n] for i in range(4))
    if use_ddp:
        # A barrier, not destroy_process_group(): gloo's teardown aborted a rank ("terminate called
        # without an active exception") on a rate-limited link (benchmarks/cluster_bench.py).
        dist.barrier()
    if rank == 0:
        report(args, document_of(args, torch, device, use_ddp, world_size, parameters, wall, forward, backward, opt,
                                 step))
    if use_ddp:
        # The figures are out; skip the interpreter's teardown, where gloo's threads, destroyed after
        # the process group without destroy_process_group(), sometimes abort the process (SIGABRT
        # after a complete run: mpirun and mp.spawn then report a failed rank).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def document_of(args, torch, device, use_ddp, world_size, parameters, wall, forward, backward, opt, step):
    document = {
        "benchmark": "ddp", "framework": "pytorch", "model": args.model, "parameters": parameters,
        "device": str(device), "backend": args.backend if use_ddp else "none", "ddp": use_ddp,
        "world_size": world_size, "batch_per_rank": args.batch, "steps": args.steps, "warmup": args.warmup,
        "optimizer": OPTIMIZER_TEXT[args.optimizer], "overlap_optimizer": args.overlap_optimizer,
        "bucket_cap_mb": args.bucket_cap_mb,
        "powersgd_rank": args.powersgd_rank,
        "threads": {"intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "machine": machine_info(torch),
        "results": {
            "samples_per_s": world_size * args.batch * args.steps / wall,
            "wall_s": wall,
            "step_time_s": summarize(step), "forward_s": summarize(forward), "backward_s": summarize(backward),
            "optimizer_s": summarize(opt), "exposed_comm_s": None,
        },
    }
    return document


def report(args, document):
    if not args.quiet:
        r = document["results"]
        print(f"# compare_pytorch: {args.model} on {document['device']}, PyTorch DDP ({document['backend']}), world "
              f"size {document['world_size']}, batch {args.batch}/rank, {document['threads']['intra_op_threads']} "
              f"thread(s)/rank")
        print(f"samples/s {r['samples_per_s']:.1f}  step {r['step_time_s']['median'] * 1e3:.2f} ms  "
              f"forward {r['forward_s']['median'] * 1e3:.2f} ms  backward {r['backward_s']['median'] * 1e3:.2f} ms  "
              f"optimizer {r['optimizer_s']['median'] * 1e3:.2f} ms")
    if args.json == "-":
        print(json.dumps(document, indent=2))
    elif args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(document, f, indent=2)
        os.replace(tmp, args.json)


def spawned(rank, world_size, args):
    worker(rank, world_size, rank, args)


def main(argv=None):
    args = parse_args(argv)
    if args.json and args.json != "-" and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        sys.exit(f"compare_pytorch.py: error: --json {args.json}: its directory does not exist")
    launched = launched_rank()
    if launched is not None:
        rank, world_size, local_rank = launched
        if args.world_size is not None and args.world_size != world_size:
            sys.exit(f"compare_pytorch.py: error: --world-size {args.world_size} but the launcher started {world_size}")
        worker(rank, world_size, local_rank, args)
        return
    world_size = args.world_size or 1
    if world_size == 1:
        worker(0, 1, 0, args)
        return
    import torch.multiprocessing as mp
    mp.spawn(spawned, args=(world_size, args), nprocs=world_size, join=True)


if __name__ == "__main__":
    main()
