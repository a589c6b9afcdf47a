"""Where each millisecond of a DDP step goes at 1, 2 and 4 ranks (weak scaling: batch per rank fixed),
read from ddp_bench's Chrome traces (forward, backward, each bucket's all-reduce, the wait for the
buckets after backward, the optimizer step), with the weak-scaling efficiency of the same runs.

    python benchmarks/scaling_breakdown.py --out benchmarks/results/2026-11-26-scaling --model mlp

Writes breakdown.json, breakdown.md and breakdown.png. Per world size: the median over steps and
ranks of each phase; "launched before backward ended" is each bucket's start minus the end of
that step's backward (negative: during backward, i.e. overlapped); efficiency(n) =
samples/s(n) / (n x samples/s(1)). Rounds alternate the world sizes in one process tree.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = os.path.join(ROOT, "scripts", "dpt-mpirun")
PHASES = ("forward", "backward", "wait for buckets", "optimizer step")


def run(args, world, round_index):
    trace = os.path.join(args.out, f"trace_np{world}_r{round_index}.json")
    result = os.path.join(args.out, f"ddp_np{world}_r{round_index}.json")
    command = [MPIRUN, "-np", str(world), os.path.join(args.bin, "ddp_bench"), "--model", args.model, "--steps",
               str(args.steps), "--trace", trace, "--json", result]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"scaling_breakdown: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    with open(trace) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    with open(result) as f:
        summary = json.load(f)
    os.remove(trace)
    return events, summary


def breakdown(events):
    """Median phase durations (ms) and bucket launch offsets (ms) relative to backward's end."""
    spans = [e for e in events if e.get("ph") == "X"]
    phases = {name: [e["dur"] / 1e3 for e in spans if e["name"] == name] for name in PHASES}
    offsets = {}
    for pid in {e["pid"] for e in spans}:
        backwards = sorted((e["ts"], e["ts"] + e["dur"]) for e in spans if e["pid"] == pid and e["name"] == "backward")
        for bucket in (e for e in spans if e["pid"] == pid and e["name"].startswith("allreduce bucket")):
            # The backward this launch belongs to: the last one that started before it.
            owner = [b for b in backwards if b[0] <= bucket["ts"]]
            if owner:
                offsets.setdefault(bucket["name"], []).append((bucket["ts"] - owner[-1][1]) / 1e3)
    comm = {name: [e["dur"] / 1e3 for e in spans if e["name"] == name]
            for name in {e["name"] for e in spans if e["name"].startswith("allreduce bucket")}}
    return ({k: statistics.median(v) for k, v in phases.items() if v},
            {k: statistics.median(v) for k, v in sorted(offsets.items())},
            {k: statistics.median(v) for k, v in sorted(comm.items())})


def plot(rows, path, model):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    worlds = [r["world_size"] for r in rows]
    bottom = [0.0] * len(rows)
    for phase, color in zip(PHASES, ("tab:blue", "tab:orange", "tab:red", "tab:green")):
        values = [r["phases_ms"].get(phase, 0.0) for r in rows]
        ax.bar([str(w) for w in worlds], values, bottom=bottom, color=color, label=phase)
        bottom = [b + v for b, v in zip(bottom, values)]
    for i, r in enumerate(rows):
        ax.text(i, bottom[i], f"eff. {r['efficiency']:.0%}", ha="center", va="bottom")
    ax.set_xlabel("ranks (batch per rank fixed)")
    ax.set_ylabel("ms per step (median over steps and ranks)")
    ax.set_title(f"DDP {model}: where a step's time goes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--worlds", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    worlds = [int(w) for w in args.worlds.split(",")]
    runs = {w: [] for w in worlds}
    machine = None
    for r in range(args.rounds):
        for world in (worlds if r % 2 == 0 else list(reversed(worlds))):
            events, summary = run(args, world, r)
            machine = machine or summary.get("machine")
            phases, offsets, comm = breakdown(events)
            runs[world].append({"phases_ms": phases, "bucket_launch_vs_backward_end_ms": offsets,
                                "bucket_allreduce_ms": comm, "samples_per_s": summary["results"]["samples_per_s"]})
            print(f"round {r + 1} np {world}: {runs[world][-1]['samples_per_s']:.0f} samples/s", flush=True)
    base = statistics.median(x["samples_per_s"] for x in runs[worlds[0]])
    rows = []
    for world in worlds:
        def med(key, sub):
            values = [x[key][sub] for x in runs[world] if sub in x[key]]
            return statistics.median(values) if values else None
        phases = {p: med("phases_ms", p) for p in PHASES if med("phases_ms", p) is not None}
        buckets = sorted({b for x in runs[world] for b in x["bucket_allreduce_ms"]})
        rate = statistics.median(x["samples_per_s"] for x in runs[world])
        rows.append({"world_size": world, "samples_per_s": rate, "efficiency": rate / (world * base) * worlds[0],
                     "phases_ms": phases,
                     "bucket_allreduce_ms": {b: med("bucket_allreduce_ms", b) for b in buckets},
                     "bucket_launch_vs_backward_end_ms": {b: med("bucket_launch_vs_backward_end_ms", b) for b in buckets}})
    with open(os.path.join(args.out, "breakdown.json"), "w") as f:
        json.dump({"machine": machine, "model": args.model, "rounds": args.rounds, "rows": rows, "runs": runs}, f,
                  indent=1)
    plot(rows, os.path.join(args.out, "breakdown.png"), args.model)
    lines = [f"# DDP {args.model}: where a step's time goes (weak scaling)", "",
             f"ddp_bench --model {args.model}, {args.steps} timed steps, medians over steps, ranks and {args.rounds} "
             f"alternated rounds. Machine: {machine.get('cpu_model') if machine else '?'}, "
             f"{machine.get('logical_cores') if machine else '?'} cores, {machine.get('utc_time') if machine else ''}.", "",
             "| ranks | samples/s | efficiency | " + " | ".join(f"{p} (ms)" for p in PHASES) +
             " | bucket all-reduce (ms) | bucket launch vs backward end (ms) |",
             "|---:|---:|---:|" + "---:|" * len(PHASES) + "---|---|"]
    for row in rows:
        lines.append(f"| {row['world_size']} | {row['samples_per_s']:.0f} | {row['efficiency']:.1%} | " +
                     " | ".join(f"{row['phases_ms'].get(p, 0):.2f}" for p in PHASES) + " | " +
                     ", ".join(f"{b[-1]}: {v:.2f}" for b, v in row["bucket_allreduce_ms"].items()) + " | " +
                     ", ".join(f"{b[-1]}: {v:+.2f}" for b, v in row["bucket_launch_vs_backward_end_ms"].items()) + " |")
    lines += ["", "![breakdown](breakdown.png)"]
    with open(os.path.join(args.out, "breakdown.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
