"""Communication across 2 simulated hosts (scripts/cluster/netns-hosts.sh) by link speed: all-reduce
bus bandwidth by message size at 2 hosts x 2 ranks (dptrain's flat all-reduce over MPI, its
hierarchical all-reduce, PyTorch's over gloo) and DDP weak scaling (MLP, 1 host -> 2 hosts x 1 rank,
dptrain beside PyTorch over gloo), on the same links, in alternated rounds. The links are limited
with tc's token bucket (tbf) on both ends of each host's veth; the unlimited link is the veth itself.
Root only (namespaces, tc).

    sudo python benchmarks/cluster_bench.py --out benchmarks/results/2026-11-26-cluster

Writes cluster.json (every run), cluster.md and cluster.png.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS_SH = os.path.join(ROOT, "scripts", "cluster", "netns-hosts.sh")
PREFIX = "dptb"
ENV = dict(os.environ, DPTRAIN_NETNS_PREFIX=PREFIX, MASTER_ADDR="10.231.0.1", MASTER_PORT="29541")
MPI = [os.path.join(ROOT, "scripts", "dpt-mpirun"), "--mca", "plm_rsh_agent",
       os.path.join(ROOT, "scripts", "cluster", "netns-rsh.sh"), "--mca", "oob_tcp_if_include", "10.231.0.0/24",
       "--mca", "btl_tcp_if_include", "10.231.0.0/24", "-x", "MASTER_ADDR", "-x", "MASTER_PORT"]
LINKS = ("veth", "25gbit", "10gbit", "1gbit")


def hosts(*args, check=True):
    return subprocess.run([HOSTS_SH] + list(args), env=ENV, check=check, capture_output=True, text=True)


def on_host0(command, timeout=900):
    for attempt in (1, 2):  # a run that fails is tried once more (and said so), a second failure ends it
        done = subprocess.run([HOSTS_SH, "exec", PREFIX + "0"] + command, env=ENV, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode == 0:
            return done.stdout
        print(f"cluster_bench: attempt {attempt} failed: {' '.join(command)}\n{done.stderr[-2000:]}", flush=True)
    sys.exit(f"cluster_bench: {' '.join(command)} failed twice")


def set_link(link):
    for h in range(2):
        hosts("link", f"{PREFIX}{h}", "none" if link == "veth" else link, "50us")


def json_of(path):
    with open(path) as f:
        result = json.load(f)
    os.remove(path)
    return result


def allreduce(args, framework):
    """busbw (GB/s) by message size at 2 hosts x 2 ranks, per algorithm."""
    path = os.path.join(args.out, "run.json")
    # slot: ranks 0, 1 on host 0 and 2, 3 on host 1 (mpirun's default); node: round-robin (0, 2 and 1, 3,
    # as SLURM's cyclic distribution), where every edge of a ring crosses between the hosts.
    where = ["--host", f"{PREFIX}0:2,{PREFIX}1:2", "-np", "4", "--map-by", args.placement]
    if framework == "dptrain":
        program = [os.path.join(args.bin, "allreduce_bench"), "--min-bytes", "1M", "--max-bytes", "64M",
                   "--step-factor", "4", "--no-raw", "--no-check", "--no-check-cost", "--hierarchical",
                   "--json", path]
    else:
        program = [sys.executable, os.path.join(ROOT, "benchmarks", "gloo_allreduce.py"), "--json", path]
    on_host0(MPI + where + program)
    rows = json_of(path)["results"]
    if framework == "dptrain":
        return {"dptrain flat": {str(r["bytes"]): r["ours"]["busbw_gbps"] for r in rows},
                "dptrain hierarchical": {str(r["bytes"]): r["hierarchical"]["busbw_gbps"] for r in rows}}
    return {"pytorch gloo": {str(r["bytes"]): r["busbw_gbps"] for r in rows}}


def ddp(args, framework, ranks):
    path = os.path.join(args.out, "run.json")
    where = ["--host", ",".join(f"{PREFIX}{h}:1" for h in range(ranks)), "-np", str(ranks)]
    if framework == "dptrain":
        program = [os.path.join(args.bin, "ddp_bench"), "--model", "mlp", "--batch", "64", "--steps", "20",
                   "--json", path]
    else:
        program = [sys.executable, os.path.join(ROOT, "benchmarks", "compare_pytorch.py"), "--model", "mlp",
                   "--batch", "64", "--steps", "20", "--quiet", "--json", path]
    on_host0(MPI + where + program)
    return json_of(path)["results"]["samples_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--placement", choices=("slot", "node"), default="slot",
                        help="ranks of the all-reduce: contiguous per host (slot) or round-robin (node)")
    parser.add_argument("--links", default=",".join(LINKS), help="comma-separated, of " + ", ".join(LINKS))
    parser.add_argument("--no-ddp", action="store_true", help="the all-reduce only")
    parser.add_argument("--ddp4", default="",
                        help="instead: DDP samples/s at 2 hosts x 2 ranks in these comma-separated modes, of "
                             + ", ".join(DDP4_MODES))
    parser.add_argument("--from-json", action="store_true", help="redo cluster.md and cluster.png from DIR/cluster.json")
    args = parser.parse_args()
    args.out = os.path.abspath(args.out)
    if args.out == "/tmp" or args.out.startswith("/tmp/"):
        sys.exit("cluster_bench: --out must be outside /tmp: each simulated host has a private /tmp")
    os.makedirs(args.out, exist_ok=True)
    args.links = tuple(link for link in LINKS if link in args.links.split(","))
    args.ddp4 = [mode for mode in args.ddp4.split(",") if mode]
    unknown = [mode for mode in args.ddp4 if mode not in DDP4_MODES]
    if unknown:
        parser.error(f"--ddp4: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(DDP4_MODES)}")
    if args.from_json:
        with open(os.path.join(args.out, "cluster.json")) as f:
            runs = json.load(f)["runs"]
        args.links = tuple(link for link in LINKS if any(r["link"] == link for r in runs))
        args.no_ddp = "weak_scaling" not in runs[0]
        args.placement = runs[0].get("placement", "slot")
        args.rounds = len({r["round"] for r in runs})
        write_report(runs, args)
        return
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from compare_pytorch import machine_info
    import torch
    hosts("down", check=False)
    hosts("up", "2")
    if args.ddp4:
        try:
            ddp4(args)
        finally:
            hosts("down", check=False)
        return
    runs = []
    try:
        print(hosts("check").stdout.strip(), flush=True)
        for r in range(args.rounds):
            for link in (args.links if r % 2 == 0 else args.links[::-1]):
                set_link(link)
                for framework in (("dptrain", "pytorch") if r % 2 == 0 else ("pytorch", "dptrain")):
                    run = {"round": r, "link": link, "framework": framework, "placement": args.placement,
                           "busbw_gbps": allreduce(args, framework)}
                    if not args.no_ddp:
                        run["samples_per_s_1"] = ddp(args, framework, 1)
                        run["samples_per_s_2"] = ddp(args, framework, 2)
                        run["weak_scaling"] = run["samples_per_s_2"] / (2 * run["samples_per_s_1"])
                    runs.append(run)
                    best = {name: max(by_size.values()) for name, by_size in run["busbw_gbps"].items()}
                    print(f"round {r + 1} {link} {framework}: busbw (best size) {best}, weak scaling "
                          f"{100 * run.get('weak_scaling', float('nan')):.1f}%", flush=True)
    finally:
        hosts("down", check=False)
    with open(os.path.join(args.out, "cluster.json"), "w") as f:
        json.dump({"machine": machine_info(torch), "runs": runs}, f, indent=1)
    write_report(runs, args)


DDP4_MODES = {  # name: (framework, extra arguments)
    "flat": ("dptrain", []),
    "hierarchical": ("dptrain", ["--hierarchical"]),
    "powersgd": ("dptrain", ["--powersgd-rank", "2"]),
    "gloo": ("pytorch", []),
    "gloo-powersgd": ("pytorch", ["--powersgd-rank", "2"]),
}


def ddp4(args):
    """DDP (MLP, batch 64 per rank) at 2 hosts x 2 ranks: samples/s in each of args.ddp4's modes - dptrain's
    flat and hierarchical all-reduce, PowerSGD (rank 2), PyTorch over gloo without and with its
    powerSGD_hook (rank 2) - in alternated order; writes ddp4.json and ddp4.md."""
    where = ["--host", f"{PREFIX}0:2,{PREFIX}1:2", "-np", "4", "--map-by", args.placement]
    path = os.path.join(args.out, "run.json")
    rows = []
    for r in range(args.rounds):
        for link in (args.links if r % 2 == 0 else args.links[::-1]):
            set_link(link)
            for mode in (args.ddp4 if r % 2 == 0 else args.ddp4[::-1]):
                framework, extra = DDP4_MODES[mode]
                if framework == "dptrain":
                    program = [os.path.join(args.bin, "ddp_bench")]
                else:
                    program = [sys.executable, os.path.join(ROOT, "benchmarks", "compare_pytorch.py"), "--quiet"]
                program += ["--model", "mlp", "--batch", "64", "--steps", "20", "--json", path] + extra
                on_host0(MPI + where + program)
                rows.append({"round": r, "link": link, "mode": mode, "samples_per_s": json_of(path)["results"]["samples_per_s"]})
                print(f"round {r + 1} {link} {mode}: {rows[-1]['samples_per_s']:.0f} samples/s", flush=True)
    with open(os.path.join(args.out, "ddp4.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = [f"# DDP at 2 simulated hosts x 2 ranks ({args.placement} placement): samples/s, MLP, batch 64 per rank",
             "", f"Medians of {args.rounds} alternated rounds; in brackets the ratio to dptrain flat (when run). "
             "powersgd: rank 2.", "",
             "| link | " + " | ".join(args.ddp4) + " |", "|---|" + "---:|" * len(args.ddp4)]
    for link in args.links:
        speed = {m: statistics.median(x["samples_per_s"] for x in rows if x["link"] == link and x["mode"] == m)
                 for m in args.ddp4}
        cells = [f"{speed[m]:.0f}" + (f" ({speed[m] / speed['flat']:.2f}x)" if "flat" in speed and m != "flat" else "")
                 for m in args.ddp4]
        lines.append(f"| {link} | " + " | ".join(cells) + " |")
    with open(os.path.join(args.out, "ddp4.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def median(runs, link, framework, value):
    return statistics.median(value(r) for r in runs if r["link"] == link and r["framework"] == framework)


ALGORITHMS = (("dptrain", "dptrain flat"), ("dptrain", "dptrain hierarchical"), ("pytorch", "pytorch gloo"))


def write_report(runs, args):
    sizes = sorted(runs[0]["busbw_gbps"]["dptrain flat"], key=int)
    lines = ["# All-reduce and DDP across 2 simulated hosts, by link", "",
             "Hosts are network namespaces (scripts/cluster/netns-hosts.sh) on one 2-core VM; links limited with "
             f"tc tbf (no netem on this kernel: no added latency); medians of {args.rounds} alternated rounds.", "",
             f"## All-reduce at 2 hosts x 2 ranks, placed {'contiguously' if args.placement == 'slot' else 'round-robin'}"
             " (--map-by " + args.placement + "): busbw in GB/s (1 Gbit/s = 0.125 GB/s)", "",
             "| link | size | " + " | ".join(name for _, name in ALGORITHMS) + " |", "|---|---:|" + "---:|" * len(ALGORITHMS)]
    for link in args.links:
        for size in sizes:
            cells = [f"{median(runs, link, fw, lambda r: r['busbw_gbps'][name][size]):.3f}" for fw, name in ALGORITHMS]
            lines.append(f"| {link} | {int(size) >> 20} MB | " + " | ".join(cells) + " |")
    if args.no_ddp:
        links_with_ddp = ()
    else:
        links_with_ddp = args.links
        lines += ["", "## DDP weak scaling, MLP, batch 64 per rank: samples/s at 2 hosts x 1 rank / (2 x at 1 rank)",
                  "", "| link | dptrain | PyTorch (gloo) |", "|---|---:|---:|"]
    for link in links_with_ddp:
        lines.append(f"| {link} | {100 * median(runs, link, 'dptrain', lambda r: r['weak_scaling']):.1f}% | "
                     f"{100 * median(runs, link, 'pytorch', lambda r: r['weak_scaling']):.1f}% |")
    lines += ["", "![cluster](cluster.png)"]
    with open(os.path.join(args.out, "cluster.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(runs, args, sizes)


def plot(runs, args, sizes):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.links), figsize=(4 * len(args.links), 3.6), squeeze=False)
    mb = [int(s) >> 20 for s in sizes]
    for ax, link in zip(axes[0], args.links):
        for (fw, name), color in zip(ALGORITHMS, ("tab:gray", "tab:blue", "tab:orange")):
            ax.plot(mb, [median(runs, link, fw, lambda r: r["busbw_gbps"][name][s]) for s in sizes], "o-",
                    color=color, label=name)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{link}")
        ax.set_xlabel("message (MB)")
    axes[0][0].set_ylabel("busbw (GB/s)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"All-reduce, 2 simulated hosts x 2 ranks ({args.placement} placement)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "cluster.png"), dpi=100)


if __name__ == "__main__":
    main()
