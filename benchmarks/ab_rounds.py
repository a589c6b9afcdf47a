"""The pieces every A/B benchmark script here shares: run one command or stop with its output, the
order of a round's forms, and the figure quoted from alternated rounds.

This machine's load moves a run by +-20%, so a comparison is never two runs: each round runs every
form once, every other round in reverse order (neither form always runs first, in the warmer or the
busier half), and the figure quoted is the median over rounds of the ratio within a round, with
the smallest and largest round's ratio beside it.
"""
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_checked(command, what, env_add=None, timeout=900):
    """stdout+stderr of `command`; a non-zero exit stops the script with one line naming `what` and
    the command, and the end of its output."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.update(env_add or {})
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        script = os.path.basename(sys.argv[0]) or "benchmark"
        sys.exit(f"{script}: error: {what}: {' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}")
    return done.stdout


def mpirun(np):
    """The launcher prefix of an `np`-rank job (scripts/dpt-mpirun: OpenMPI's mpirun as root, oversubscribed)."""
    return [os.path.join(ROOT, "scripts", "dpt-mpirun"), "-np", str(np)]


def round_order(forms, round_index):
    """`forms` as round `round_index` runs them: as given in even rounds, reversed in odd ones."""
    forms = list(forms)
    return forms if round_index % 2 == 0 else forms[::-1]


def ratio_summary(rounds, numerator, denominator):
    """Median, smallest and largest over rounds of rounds[i][numerator] / rounds[i][denominator]."""
    values = [r[numerator] / r[denominator] for r in rounds]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def ratio_text(summary):
    """`1.234x (1.100..1.300)`: the median in bold for the tables."""
    return f"**{summary['median']:.3f}x** ({summary['min']:.3f}..{summary['max']:.3f})"


def median_of(rounds, key):
    return statistics.median(r[key] for r in rounds)


def machine_line(machine, extra=""):
    """The tables' last line: which machine, how loaded, when."""
    return (f"Machine: {machine.get('cpu_model')}, {machine.get('cores_available')} cores available, torch "
            f"{machine.get('torch_version')}, {machine.get('utc_time')}, load {machine.get('load_average_1m', 0):.2f}"
            f"{'; ' + extra if extra else ''}.")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on a cluster node)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def samples_per_s(args, framework, model, plan, extra, workdir):
    """samples/s of one side-by-side run at args.np ranks, 1 thread each: ddp_bench under dpt-mpirun
    (framework "ours", from args.bin) or compare_pytorch.py spawning its ranks ("theirs", with
    args.python); `plan` is (batch per rank, timed steps, warm-up steps)."""
    batch, steps, warmup = plan
    path = os.path.join(workdir, "run.json")
    if framework == "ours":
        command = mpirun(args.np) + [os.path.join(args.bin, "ddp_bench")]
    else:
        command = [args.python, os.path.join(ROOT, "benchmarks", "compare_pytorch.py"), "--world-size", str(args.np)]
    command += ["--model", model, "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup),
                "--threads", "1", "--json", path, "--quiet"] + list(extra)
    run_checked(command, f"{model} ({framework})", {"DPTRAIN_LOG_LEVEL": "warn"})
    with open(path) as f:
        return json.load(f)["results"]["samples_per_s"]
