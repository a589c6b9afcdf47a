"""ZeRO-1 (dpt::ShardedOptimizer) against plain DDP + Adam, world sizes 1-4, alternated rounds in one
process tree: optimizer-state bytes and peak RSS of the largest rank, samples/s (build/bin/zero_bench,
an MLP of ~37M parameters).

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


def run(args, mode, world):
    path = os.path.join(args.out, f"run_{mode}_{world}.json")
    command = [MPIRUN, "-np", str(world), os.path.join(args.bin, "zero_bench"), "--mode", mode,
               "--steps", str(args.steps), "--json", path]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"zero_bench: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    with open(path) as f:
        result = json.load(f)
    os.remove(path)
    return result


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = sorted({r["world_size"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for mode, color in (("plain", "tab:gray"), ("zero", "tab:blue")):
        def median(key, world):
            return statistics.median(r[key] for r in rows if r["mode"] == mode and r["world_size"] == world)
        axes[0].plot(worlds, [median("optimizer_state_bytes_max_rank", w) / 1e6 for w in worlds], "o-", color=color,
                     label=mode)
        axes[1].plot(worlds, [median("peak_rss_bytes_max_rank", w) / 1e6 for w in worlds], "o-", color=color, label=mode)
        axes[2].plot(worlds, [median("samples_per_s", w) for w in worlds], "o-", color=color, label=mode)
    for ax, title in zip(axes, ("optimizer state per rank (MB)", "peak RSS, largest rank (MB)", "samples/s")):
        ax.set_title(title)
        ax.set_xlabel("ranks")
        ax.set_xticks(worlds)
        ax.legend()
    fig.suptitle("ZeRO-1 (ShardedOptimizer) vs DDP + Adam, MLP of %.1fM parameters" % (rows[0]["parameters"] / 1e6))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--worlds", default="1,2,3,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for r in range(args.rounds):
        for world in (int(w) for w in args.worlds.split(",")):
            for mode in (("plain", "zero") if r % 2 == 0 else ("zero", "plain")):
                rows.append(run(args, mode, world))
                print(f"round {r + 1} world {world} {mode}: state {rows[-1]['optimizer_state_bytes_max_rank'] / 1e6:.1f} MB, "
                      f"rss {rows[-1]['peak_rss_bytes_max_rank'] / 1e6:.0f} MB, {rows[-1]['samples_per_s']:.0f} samples/s",
                      flush=True)
    with open(os.path.join(args.out, "zero.json"), "w") as f:
        json.dump(rows, f, indent=1)
    plot(rows, os.path.join(args.out, "zero.png"))
    m = rows[0]["machine"]
    lines = ["# ZeRO-1 (ShardedOptimizer) vs DDP + Adam", "",
             f"MLP of {rows[0]['parameters'] / 1e6:.1f}M parameters (fp32), Adam, batch {rows[0]['batch_per_rank']} per rank, "
             f"{args.steps} timed steps; medians of {args.rounds} alternated rounds. Machine: {m.get('cpu_model')}, "
             f"{m.get('logical_cores')} cores, {m.get('utc_time')}.", "",
             "| ranks | state/rank plain (MB) | state/rank ZeRO-1 (MB) | ratio | peak RSS plain (MB) | peak RSS ZeRO-1 (MB) | samples/s plain | samples/s ZeRO-1 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for world in sorted({r["world_size"] for r in rows}):
        def med(mode, key):
            return statistics.median(r[key] for r in rows if r["mode"] == mode and r["world_size"] == world)
        sp, sz = med("plain", "optimizer_state_bytes_max_rank"), med("zero", "optimizer_state_bytes_max_rank")
        lines.append(f"| {world} | {sp / 1e6:.1f} | {sz / 1e6:.1f} | {sz / sp:.3f} | "
                     f"{med('plain', 'peak_rss_bytes_max_rank') / 1e6:.0f} | {med('zero', 'peak_rss_bytes_max_rank') / 1e6:.0f} | "
                     f"{med('plain', 'samples_per_s'):.0f} | {med('zero', 'samples_per_s'):.0f} |")
    lines += ["", "![zero](zero.png)"]
    with open(os.path.join(args.out, "zero.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
