"""The data part of benchmarks/run_suite.py: how fast the data sources feed training.

  - image decoding: preprocess_bench on an image folder of 224x224 RGB JPEGs (Fashion-MNIST images
    resized, made by scripts/data/make_datasets.py): read + libjpeg-turbo decode + resize to 64 +
    random crop and flip, images/s against the preprocessing workers;
  - training from an image folder against training from IDX files: `dptrain train` (built-in CNN,
    2 ranks, --workers 2, 300 steps of batch 64) on Fashion-MNIST as PNG files and as the IDX files
    they were made from, alternated for `rounds` rounds; samples/s between step 50 and the last
    step, read from the metrics file. Equal rates mean the pool keeps the model fed.
"""

import json
import os
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDX = "/usr/share/datasets/fashion-mnist"


def make(suite, fmt, out, *extra):
    if os.path.isdir(out):
        return True
    command = [suite.args.python, os.path.join(ROOT, "scripts", "data", "make_datasets.py"), "--idx", IDX,
               "--format", fmt, "--out", out] + list(extra)
    done = subprocess.run(command, capture_output=True, text=True)
    suite.log.write(f"\n$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    return done.returncode == 0


def training_rate(metrics_path, global_batch):
    steps = [json.loads(line) for line in open(metrics_path) if '"type":"step"' in line]
    first = next(s for s in steps if s["step"] >= 50)
    last = steps[-1]
    return (last["step"] - first["step"]) * global_batch / (last["elapsed_s"] - first["elapsed_s"])


def run_data(suite, rounds=2):
    # A smoke run (--quick) makes 512 JPEGs and 8192 PNGs and trains 100 steps once: what the full
    # sizes cost is mostly making the folders (60000 PNG files) and decoding them.
    quick = suite.args.quick
    images, steps = ("512", "100") if quick else ("2048", "300")
    rounds = 1 if quick else rounds
    rows = []
    work = os.path.join(suite.out, "data")
    os.makedirs(work, exist_ok=True)
    jpegs = os.path.join(work, "jpeg224")
    if make(suite, "imagefolder", jpegs, "--image-format", "jpg", "--size", "224", "--rgb", "--limit", images):
        doc = suite.run("preprocess_bench --images (JPEG 224x224)", 1,
                        [suite.binary("preprocess_bench"), "--images", jpegs, "--image-size", "64", "--blur-passes", "0",
                         "--workers", "0,1,2,4", "--samples", images, "--repeats", "2",
                         "--out", os.path.join(suite.out, "preprocess_jpeg.json")], "preprocess_jpeg.json")
        if doc:
            rows += ["## Image decoding on the preprocessing pool", "",
                     f"{images} JPEGs of 224x224 RGB: read, decode (libjpeg-turbo), resize to 64x64, random crop + flip.", "",
                     "| workers | images/s | speedup |", "|---:|---:|---:|"]
            rows += [f"| {r['workers']} | {r['samples_per_s']:.0f} | {r['speedup']:.2f} |" for r in doc["results"]]
            rows.append("")
    pngs = os.path.join(work, "fashion-png")
    rates = {"IDX files": [], "image folder (PNG)": []}
    if make(suite, "imagefolder", pngs, *(("--limit", "8192") if quick else ())):
        for r in range(rounds):
            for label, data in (("IDX files", IDX), ("image folder (PNG)", pngs)):
                metrics = os.path.join(work, f"train_{'idx' if data == IDX else 'png'}_r{r}.jsonl")
                command = [os.path.join(suite.bin, "dptrain"), "train", "--data", data, "--max-steps", steps,
                           "--batch-size", "64", "--workers", "2", "--no-eval", "--log-every", "25",
                           "--metrics", metrics]
                full = suite.launch(2, command)
                suite.log.write(f"\n$ {' '.join(full)}\n")
                done = subprocess.run(full, env=suite.env, capture_output=True, text=True, cwd=work,
                                      timeout=suite.args.timeout)
                suite.log.write(done.stdout + done.stderr)
                if done.returncode == 0 and os.path.exists(metrics):
                    rates[label].append(training_rate(metrics, 2 * 64))
                else:
                    suite.failures.append(f"dptrain train on {label}: exit {done.returncode}")
        if all(rates.values()):
            rows += ["## Training from an image folder against IDX files", "",
                     f"`dptrain train`, built-in CNN, 2 ranks, `--workers 2`, batch 64 per rank, steps 50-{steps}; "
                     f"medians of {rounds} alternated rounds.", "",
                     "| source | samples/s | rounds |", "|---|---:|---|"]
            for label, values in rates.items():
                rows.append(f"| {label} | {statistics.median(values):.0f} | "
                            + ", ".join(f"{v:.0f}" for v in values) + " |")
            rows.append("")
    with open(os.path.join(suite.out, "data_sources.json"), "w") as f:
        json.dump({"training_samples_per_s": rates}, f, indent=1)
    return rows
