"""The commands of README.md and docs/*.md run as written (issue 33: a docs check).

Every ```bash block of those files carries a marker on the line before it, saying how it is checked:

    <!-- docs-check: run -->            run here, as written (seconds)
    <!-- docs-check: long -->           run as written when DPTRAIN_DOCS_LONG=1 (minutes: full trainings,
                                        the benchmark suite); checked statically otherwise
    <!-- docs-check: skip: REASON -->   cannot run on one machine (a cluster, SLURM, a GPU, root's
                                        namespaces); checked statically

A ```python block runs when marked `run` or `long` (the files a bash block below it needs).
Statically, every option a `dptrain train|eval|infer` line passes must be one that `--help` lists,
and every scripts/, benchmarks/, examples/ or python/ path a block names must exist. The blocks of one
document run in order in one directory (as a reader follows it) holding build/, scripts/, ... of this
checkout, with `dptrain`, `dpt-mpirun` and the venv's `python` on PATH. What a block quotes of its
output (a comment `# dptrain train: 9 steps, ...`) must match what it printed: the same words and
integers, losses within 2% (a perplexity as the loss it is exp of: its log within 2%), accuracies
within 0.5 points (times are not compared), and every
checkpoint-NNNNNNNNNN.pt it names must be a file it wrote.

    DPTRAIN_DOCS_LONG=1 ctest --test-dir build -R docs_commands --output-on-failure   # every block
    DPTRAIN_DOCS_LONG=1 DPTRAIN_DOCS_ONLY=docs/cli.md ctest --test-dir build -R docs_commands -V
"""
import glob
import math
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.environ["DPTRAIN_SOURCE_DIR"]
BIN = os.environ["DPTRAIN_BIN"]
LONG = os.environ.get("DPTRAIN_DOCS_LONG", "") not in ("", "0")
DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
# DPTRAIN_DOCS_ONLY=docs/cli.md,README.md: only those documents (while writing one).
DOCS = [d for d in DOCS if d in os.environ.get("DPTRAIN_DOCS_ONLY", d).split(",")]
MARKER = re.compile(r"<!-- docs-check: (run|long|skip: [^>]+?) -->")
failures = []


def blocks_of(path):
    """(line, language, mode, text) of each fenced block of `path`; mode None when unmarked."""
    lines = open(os.path.join(ROOT, path)).read().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, language = i, fence.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(previous)
        found.append((start + 1, language, marker.group(1) if marker else None, "\n".join(lines[start + 1:end])))
        i = end + 1
    return found


def help_options():
    options = {}
    for command in ("train", "eval", "infer"):
        out = subprocess.run([os.path.join(BIN, "dptrain"), command, "--help"], capture_output=True, text=True).stdout
        options[command] = set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", out))
    return options


def logical_lines(text):
    """The block's commands: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def check_statically(where, text, options):
    for line in logical_lines(text):
        for match in re.finditer(r"(?:^|[\s/])dptrain (train|eval|infer)\b(.*)", line):
            command, rest = match.group(1), match.group(2)
            for option in re.findall(r"(?:^|\s)(--[a-z0-9][a-z0-9-]*)", rest):
                if option not in options[command]:
                    failures.append(f"{where}: `dptrain {command} {option}`: `dptrain {command} --help` has no {option}")
    for path in re.findall(r"(?<![\w/.$-])((?:scripts|benchmarks|examples|python)/[\w./-]+\w)", text):
        if not os.path.exists(os.path.join(ROOT, path)):
            failures.append(f"{where}: names {path}, which does not exist")


def quoted_outputs(text):
    return [m.group(1) for m in re.finditer(r"^#\s+((?:dptrain|dpt-mpirun|dptrain-plot)[\w ]*: .*)$", text, re.M)]


def matches_quoted(quoted, output):
    """Whether a line of `output` says `quoted`, numbers compared as the docstring says."""
    parts = re.split(r"(\d+\.\d+%?)", quoted)
    pattern = "".join(r"(\d+\.\d+%?)" if k % 2 else re.escape(p) for k, p in enumerate(parts))
    for match in re.finditer(pattern, output):
        good = True
        for k in range(1, len(parts), 2):
            said, got = parts[k], match.group((k + 1) // 2)
            if parts[k + 1].startswith(" s"):
                continue  # a time
            if said.endswith("%") != got.endswith("%"):
                good = False
            elif said.endswith("%"):
                good &= abs(float(said[:-1]) - float(got[:-1])) <= 0.5
            elif parts[k - 1].endswith("perplexity "):  # exp(loss): 2% on the loss is ~5% here
                good &= abs(math.log(float(said)) - math.log(float(got))) <= 0.02 * math.log(float(said))
            else:
                good &= abs(float(said) - float(got)) <= 0.02 * abs(float(said))
        if good:
            return True
    return False


def workspace(doc):
    """A directory for one document's blocks, with this checkout's folders and programs at hand."""
    work = os.path.abspath(os.path.join("docs-check", doc.replace("/", "_").replace(".md", "")))
    os.makedirs(os.path.join(work, ".bin"))
    for name in ("scripts", "examples", "python"):
        os.symlink(os.path.join(ROOT, name), os.path.join(work, name))
    # A copy, without the kept results: the suite writes benchmarks/results/ beside itself.
    shutil.copytree(os.path.join(ROOT, "benchmarks"), os.path.join(work, "benchmarks"),
                    ignore=lambda folder, names: ["results"] if folder == os.path.join(ROOT, "benchmarks") else [])
    os.symlink(os.environ["DPTRAIN_BUILD_DIR"], os.path.join(work, "build"))
    for name, target in (("dptrain", os.path.join(BIN, "dptrain")), ("dpt-mpirun", os.environ["DPTRAIN_MPIRUN"])):
        os.symlink(target, os.path.join(work, ".bin", name))
    for name in ("python", "python3"):  # a script, not a link: a venv's python finds its venv by its own path
        with open(os.path.join(work, ".bin", name), "w") as f:
            f.write(f'#!/bin/sh\nexec "{os.environ["DPTRAIN_PYTHON"]}" "$@"\n')
        os.chmod(os.path.join(work, ".bin", name), 0o755)
    return work


def run_block(where, work, language, mode, text):
    env = dict(os.environ, PATH=os.path.join(work, ".bin") + os.pathsep + os.environ["PATH"])
    command = ["bash", "-euo", "pipefail", "-c", text] if language == "bash" else [os.environ["DPTRAIN_PYTHON"], "-c", text]
    print(f"--- {where} ({mode}) ---\n{text}", flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=1800 if mode == "long" else 300)
    except subprocess.TimeoutExpired:
        failures.append(f"{where}: did not finish in time")
        return
    tail = "\n".join(proc.stdout.splitlines()[-15:])
    if proc.returncode != 0:
        failures.append(f"{where}: exit code {proc.returncode}; its last lines:\n{tail}")
        return
    for quoted in quoted_outputs(text):
        if not matches_quoted(quoted, proc.stdout):
            failures.append(f"{where}: quotes `{quoted}`, but printed:\n{tail}")
    for name in set(re.findall(r"checkpoint-\d{10}\.pt", text)):
        if not glob.glob(os.path.join(work, "**", name), recursive=True):
            failures.append(f"{where}: names {name}, which it did not write")
    # What each program ended with (the lines a doc would quote), then the last lines.
    said = [line for line in proc.stdout.splitlines() if re.match(r"^[\w.-]+( \w+)?: ", line) and "[" not in line[:12]]
    print("\n".join(said + ["..."] + proc.stdout.splitlines()[-5:]), flush=True)
    print(f"({where}: {time.monotonic() - started:.0f} s)", flush=True)


def main():
    options = help_options()
    counts = {"run": 0, "long": 0, "skip": 0, "long not run": 0}
    for doc in DOCS:
        work = None
        for line, language, mode, text in blocks_of(doc):
            where = f"{doc}:{line}"
            if language == "bash" and mode is None:
                failures.append(f"{where}: a bash block without a <!-- docs-check: run|long|skip: why --> line before it")
                continue
            if language == "bash":
                check_statically(where, text, options)
            if mode is None or language not in ("bash", "python"):
                continue
            kind = "skip" if mode.startswith("skip") else mode
            if kind == "skip" or (kind == "long" and not LONG):
                counts["long not run" if kind == "long" else "skip"] += 1
                continue
            counts[kind] += 1
            work = work or workspace(doc)
            run_block(where, work, language, kind, text)
    for failure in failures:
        print("FAIL:", failure)
    if failures:
        sys.exit(1)
    print(f"ok: the docs' blocks: {counts['run']} run, {counts['long']} long ones run, {counts['long not run']} long "
          f"ones checked statically (DPTRAIN_DOCS_LONG=1 runs them), {counts['skip']} that need a cluster or a GPU "
          "checked statically")


if __name__ == "__main__":
    main()
