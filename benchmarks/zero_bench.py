"""ZeRO-1 and ZeRO-2 (dpt::ShardedOptimizer) against plain DDP + Adam, beside PyTorch's DDP + Adam and
DDP + ZeroRedundancyOptimizer on the same MLP (~37M parameters), world sizes 1-4, modes alternated in
rounds in one process tree: optimizer-state and gradient bytes and peak RSS of the largest rank,
samples/s (build/bin/zero_bench, benchmarks/zero_pytorch.py).

    python benchmarks/zero_bench.py --out benchmarks/results/2026-11-26-zero

Writes zero.json (runs with their machine blocks), zero.md and zero.png.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = os.path.join(ROOT, "scripts", "dpt-mpirun")
DPTRAIN_MODES = ("plain", "zero1", "zero2")
TORCH_MODES = ("torch_plain", "torch_zero1")
LABELS = {"plain": "dptrain DDP", "zero1": "dptrain ZeRO-1", "zero2": "dptrain ZeRO-2",
          "torch_plain": "PyTorch DDP", "torch_zero1": "PyTorch ZeroRedundancyOptimizer"}
COLORS = {"plain": "tab:gray", "zero1": "tab:blue", "zero2": "tab:green", "torch_plain": "tab:orange",
          "torch_zero1": "tab:red"}


def run(args, mode, world):
    path = os.path.join(args.out, f"run_{mode}_{world}.json")
    if mode in TORCH_MODES:
        program = [sys.executable, os.path.join(ROOT, "benchmarks", "zero_pytorch.py")]
    else:
        program = [os.path.join(args.bin, "zero_bench")]
    command = [MPIRUN, "-np", str(world)] + program + ["--mode", mode, "--steps", str(args.steps), "--json", path]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"zero_bench: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    with open(path) as f:
        result = json.load(f)
    os.remove(path)
    return result


def median(rows, mode, world, key):
    values = [r[key] for r in rows if r["mode"] == mode and r["world_size"] == world]
    return statistics.median(values) if values else float("nan")


def plot(rows, modes, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = sorted({r["world_size"] for r in rows})
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    keys = (("optimizer_state_bytes_max_rank", 1e-6, "optimizer state per rank (MB)"),
            ("gradient_bytes_max_rank", 1e-6, "gradient memory kept per rank (MB)"),
            ("peak_rss_bytes_max_rank", 1e-6, "peak RSS, largest rank (MB)"),
            ("samples_per_s", 1, "samples/s"))
    for ax, (key, scale, title) in zip(axes, keys):
        for mode in modes:
            ax.plot(worlds, [median(rows, mode, w, key) * scale for w in worlds], "o-", color=COLORS[mode],
                    label=LABELS[mode])
        ax.set_title(title)
        ax.set_xlabel("ranks")
        ax.set_xticks(worlds)
    axes[0].legend(fontsize=8)
    fig.suptitle("ZeRO (ShardedOptimizer) vs DDP + Adam, MLP of %.1fM parameters" % (rows[0]["parameters"] / 1e6))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(rows, modes, args):
    m = rows[0]["machine"]
    lines = ["# ZeRO-1/2 (ShardedOptimizer) vs DDP + Adam, beside PyTorch", "",
             f"MLP of {rows[0]['parameters'] / 1e6:.1f}M parameters (fp32), Adam, batch {rows[0]['batch_per_rank']} per "
             f"rank, {args.steps} timed steps; medians of {args.rounds} rounds, modes alternated. Machine: "
             f"{m.get('cpu_model')}, {m.get('logical_cores')} cores, {m.get('utc_time')}. Gradient memory: what is kept "
             "between steps (plain DDP: .grad and DDP's buckets).", ""]
    for key, title, scale, fmt in (("optimizer_state_bytes_max_rank", "Optimizer state per rank (MB)", 1e-6, "{:.1f}"),
                                   ("gradient_bytes_max_rank", "Gradient memory per rank (MB)", 1e-6, "{:.1f}"),
                                   ("peak_rss_bytes_max_rank", "Peak RSS of the largest rank (MB)", 1e-6, "{:.0f}"),
                                   ("samples_per_s", "Samples/s (all ranks)", 1, "{:.0f}")):
        lines += [f"## {title}", "", "| ranks | " + " | ".join(LABELS[m] for m in modes) + " |",
                  "|---:|" + "---:|" * len(modes)]
        for world in sorted({r["world_size"] for r in rows}):
            lines.append(f"| {world} | " + " | ".join(fmt.format(median(rows, mode, world, key) * scale)
                                                      for mode in modes) + " |")
        lines.append("")
    lines += ["![zero](zero.png)"]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--worlds", default="1,2,3,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-pytorch", action="store_true", help="dptrain's modes only")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    modes = DPTRAIN_MODES + (() if args.no_pytorch else TORCH_MODES)
    rows = []
    for r in range(args.rounds):
        for world in (int(w) for w in args.worlds.split(",")):
            order = modes[r % len(modes):] + modes[:r % len(modes)]  # a different mode goes first each round
            for mode in order:
                rows.append(run(args, mode, world))
                last = rows[-1]
                print(f"round {r + 1} world {world} {mode}: state {last['optimizer_state_bytes_max_rank'] / 1e6:.1f} MB, "
                      f"gradients {last['gradient_bytes_max_rank'] / 1e6:.1f} MB, rss {last['peak_rss_bytes_max_rank'] / 1e6:.0f} MB, "
                      f"{last['samples_per_s']:.0f} samples/s", flush=True)
    with open(os.path.join(args.out, "zero.json"), "w") as f:
        json.dump(rows, f, indent=1)
    plot(rows, modes, os.path.join(args.out, "zero.png"))
    lines = table(rows, modes, args)
    with open(os.path.join(args.out, "zero.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
