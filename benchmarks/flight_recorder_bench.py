"""What the flight recorder costs: the same jobs with DPTRAIN_FLIGHT_RECORDER=0 (off) and the default
(64 entries, plus the world's answering thread), alternated in one process tree.

  - small all-reduces, where a per-collective cost would show first: allreduce_bench at 2 ranks,
    4 KB to 1 MB, dptrain's median time per size;
  - training: `dptrain train --model mlp` at 2 ranks, samples/s over steps 20-300.

    python benchmarks/flight_recorder_bench.py --out benchmarks/results/2026-11-26-flight-recorder

Writes flight_recorder.json (machine block), flight_recorder.md and flight_recorder.png.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = os.path.join(ROOT, "scripts", "dpt-mpirun")


def machine():
    import torch

    from compare_pytorch import machine_info  # the suite's machine block
    return machine_info(torch)


def run(command, recorder):
    env = dict(os.environ)
    if recorder == "off":
        env["DPTRAIN_FLIGHT_RECORDER"] = "0"
    else:
        env.pop("DPTRAIN_FLIGHT_RECORDER", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        sys.exit(f"flight_recorder_bench: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def allreduce(args, recorder):
    out = run([MPIRUN, "-np", "2", os.path.join(args.bin, "allreduce_bench"), "--min-bytes", "4K", "--max-bytes", "1M",
               "--no-raw", "--no-check", "--no-check-cost", "--iters", "30", "--json", "-", "--quiet"], recorder)
    rows = json.loads(out[out.index("{"):])["results"]
    return {str(r["bytes"]): r["ours"]["time_s"]["median"] * 1e6 for r in rows}


def train(args, recorder, metrics):
    run([MPIRUN, "-np", "2", os.path.join(args.bin, "dptrain"), "train", "--model", "mlp", "--max-steps", "300",
         "--batch-size", "64", "--no-eval", "--log-every", "10", "--metrics", metrics], recorder)
    steps = [json.loads(line) for line in open(metrics) if '"type":"step"' in line]
    first = next(s for s in steps if s["step"] >= 20)
    last = steps[-1]
    os.remove(metrics)
    return (last["step"] - first["step"]) * 128 / (last["elapsed_s"] - first["elapsed_s"])


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = sorted(results["allreduce"]["on"][0], key=int)
    for recorder, color in (("off", "tab:gray"), ("on", "tab:blue")):
        medians = [statistics.median(r[s] for r in results["allreduce"][recorder]) for s in sizes]
        left.plot([int(s) for s in sizes], medians, "o-", color=color, label=f"recorder {recorder}")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("bytes")
    left.set_ylabel("all-reduce time, us (median of rounds)")
    left.legend()
    for i, (recorder, color) in enumerate((("off", "tab:gray"), ("on", "tab:blue"))):
        values = results["train"][recorder]
        right.bar(i, statistics.median(values), color=color)
        right.plot([i] * len(values), values, "k.")
    right.set_xticks([0, 1], ["recorder off", "recorder on"])
    right.set_ylabel("dptrain train mlp, 2 ranks: samples/s")
    fig.suptitle("Flight recorder cost (alternated rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {"machine": machine(), "allreduce": {"off": [], "on": []}, "train": {"off": [], "on": []}}
    for r in range(args.rounds):
        for recorder in (("off", "on") if r % 2 == 0 else ("on", "off")):  # A B B A ...
            results["allreduce"][recorder].append(allreduce(args, recorder))
            results["train"][recorder].append(train(args, recorder, os.path.join(args.out, "metrics.jsonl")))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    with open(os.path.join(args.out, "flight_recorder.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot(results, os.path.join(args.out, "flight_recorder.png"))
    m = results["machine"]
    lines = ["# Flight recorder cost", "",
             f"{args.rounds} alternated rounds; machine: {m['cpu_model']}, {m['logical_cores']} CPUs, load "
             f"{m['load_average_1m']:.1f} at start, {m['utc_time']}.", "",
             "| all-reduce, 2 ranks | off: median us | on: median us | on / off |", "|---|---:|---:|---:|"]
    for size in sorted(results["allreduce"]["on"][0], key=int):
        off = statistics.median(r[size] for r in results["allreduce"]["off"])
        on = statistics.median(r[size] for r in results["allreduce"]["on"])
        lines.append(f"| {int(size) // 1024} KB | {off:.1f} | {on:.1f} | {on / off:.3f} |")
    off, on = (statistics.median(results["train"][k]) for k in ("off", "on"))
    lines += ["", "| dptrain train mlp, 2 ranks | off | on | on / off |", "|---|---:|---:|---:|",
              f"| samples/s (rounds: off {', '.join(f'{v:.0f}' for v in results['train']['off'])}; "
              f"on {', '.join(f'{v:.0f}' for v in results['train']['on'])}) | {off:.0f} | {on:.0f} | {on / off:.3f} |",
              "", "![cost](flight_recorder.png)"]
    with open(os.path.join(args.out, "flight_recorder.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
