"""What a training run leaves besides the model, under `mpirun -np 2 dptrain train`:

  (a) --tensorboard: TensorBoard's own reader (EventAccumulator, which checks every record's
      CRC-32C) finds the scalars, and they equal the metrics file's;
  (b) python/dptrain_plot.py draws the metrics file as a PNG (and names a file that is not one);
  (c) on an interactive terminal (a pseudo-terminal from `script`, where one can be opened) rank 0
      shows a progress bar;
      piped into a file the log has no trace of it; --no-progress turns it off;
  (d) --plot FILE, removed, says where the curves went; --tensorboard on a file is one clear error.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cli_helpers import DATA, DPTRAIN, MPIRUN, check, run

TRAIN = ["train", "--model", "mlp", "--data", DATA, "--limit-samples", "1024", "--batch-size", "32",
         "--epochs", "2", "--lr", "0.05", "--log-every", "4"]

# --- (a) TensorBoard ------------------------------------------------------------------------------------
run(TRAIN + ["--tensorboard", "tb", "--metrics", "metrics.jsonl"], np_=2)
events = [f for f in os.listdir("tb") if "tfevents" in f]
check(len(events) == 1, f"one event file in tb/: {events}")
reader = EventAccumulator("tb")
reader.Reload()
tags = set(reader.Tags()["scalars"])
expected = {"train/loss", "train/lr", "train/epoch_loss", "test/loss", "test/accuracy", "perf/samples_per_s",
            "perf/step_time_ms", "perf/exposed_comm_ms", "perf/epoch_s"}
check(expected <= tags, f"TensorBoard's reader finds the scalars {sorted(tags)}")

records = [json.loads(line) for line in open("metrics.jsonl")]
steps = [r for r in records if r["type"] == "step"]
losses = [r for r in records if r["type"] in ("step", "loss")]
epochs = [r for r in records if r["type"] == "epoch"]
total_steps = 2 * (1024 // 64)
check([r["step"] for r in steps] == [1] + list(range(4, total_steps + 1, 4)), "a step record at each logged step")
check([r["step"] for r in losses] == list(range(1, total_steps + 1)),
      "the metrics file has the loss of every step (a 'loss' record for each step not logged), in order")
tb_loss = {e.step: e.value for e in reader.Scalars("train/loss")}
check(sorted(tb_loss) == list(range(1, total_steps + 1)), "TensorBoard's train/loss at every step")
worst = max(abs(tb_loss[r["step"]] - r["loss"]) / abs(r["loss"]) for r in losses)
check(worst < 1e-6, f"train/loss equals the metrics file's loss (float32; max relative difference {worst:.1e})")
# The losses of steps that were not logged equal those of the same run logging every step.
run(TRAIN[:-1] + ["1", "--metrics", "every_step.jsonl"], np_=2)
logged = {r["step"]: r["loss"] for r in map(json.loads, open("every_step.jsonl")) if r["type"] == "step"}
worst = max(abs(logged[r["step"]] - r["loss"]) / abs(r["loss"]) for r in losses)
check(sorted(logged) == list(range(1, total_steps + 1)) and worst < 1e-12,
      f"each step's loss equals the loss --log-every 1 logs for it (max relative difference {worst:.1e})")
tb_accuracy = {e.step: e.value for e in reader.Scalars("test/accuracy")}
check(sorted(tb_accuracy) == [r["step"] for r in epochs], "test/accuracy once per epoch, at its last step")
check(all(abs(tb_accuracy[r["step"]] - r["test_accuracy"]) < 1e-6 and 0 <= r["test_accuracy"] <= 1 for r in epochs),
      "test/accuracy equals the metrics file's, a fraction in both (issue 33: one unit in every file)")
throughput = [e.value for e in reader.Scalars("perf/samples_per_s")]
check(all(v > 0 for v in throughput), f"samples/s logged and positive (median {sorted(throughput)[len(throughput) // 2]:.0f})")
exposed = [e.value for e in reader.Scalars("perf/exposed_comm_ms")]
check(all(v >= 0 for v in exposed), "exposed communication (ms) logged at 2 ranks")

# --- (b) the plot script ---------------------------------------------------------------------------------
plot = os.path.join(os.environ["DPTRAIN_SOURCE_DIR"], "python", "dptrain_plot.py")
subprocess.run([sys.executable, plot, "metrics.jsonl", "-o", "curves.png", "--title", "MLP, 2 ranks"], check=True)
with open("curves.png", "rb") as f:
    head = f.read(24)
check(head[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize("curves.png") > 20000, "dptrain_plot.py wrote a PNG")
width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
check(900 <= width <= 1400 and 0.6 <= height / width <= 0.9,
      f"the picture fits a page: 2x2 panels, {width}x{height} pixels (issue 33: it was 2024x418)")
with open("not_metrics.jsonl", "w") as f:
    f.write("epoch 1 done\n")
bad = subprocess.run([sys.executable, plot, "not_metrics.jsonl"], capture_output=True, text=True)
check(bad.returncode != 0 and "not_metrics.jsonl:1: not a JSON line" in bad.stderr,
      f"a file that is not a metrics file: one line naming it ({bad.stderr.strip()})")

# --- (c) the progress bar ------------------------------------------------------------------------------
quick = TRAIN[:-4] + ["--epochs", "1", "--log-every", "8", "--metrics", "", "--no-eval"]
piped = run(quick, np_=2)
check("ETA" not in piped and "\x1b[K" not in piped, "piped into a file: plain log lines, no bar")
command = " ".join(shlex.quote(a) for a in [MPIRUN, "-np", "2", DPTRAIN] + quick)
terminal = dict(capture_output=True, text=True, timeout=120, env={**os.environ, "TERM": "xterm"})
if shutil.which("script") is None or subprocess.run(["script", "-qec", "true", "/dev/null"], **terminal).returncode:
    # A chroot without /dev/pts (the fresh-machine check) cannot open a pseudo-terminal.
    print("skipped (c) on a terminal: `script` cannot open a pseudo-terminal on this machine")
else:
    tty = subprocess.run(["script", "-qec", command, "/dev/null"], **terminal)
    # (text mode reads the bar's carriage returns as newlines: the erase sequence is what remains)
    check(tty.returncode == 0 and "samples/s  ETA" in tty.stdout and "\x1b[K" in tty.stdout
          and "epoch 1/1 [" in tty.stdout,
          "on a terminal: a progress bar (epoch, steps, loss, samples/s, ETA), redrawn below the log lines")
    evaluating = " ".join(shlex.quote(a) for a in [MPIRUN, "-np", "2", DPTRAIN] + TRAIN[:-4] +
                          ["--epochs", "1", "--metrics", "", "--batch-size", "8"])
    tty = subprocess.run(["script", "-qec", evaluating, "/dev/null"], **terminal)
    check(tty.returncode == 0 and "evaluating [" in tty.stdout,
          "on a terminal: the bar shows the evaluation as it runs (issue 33)")
    tty = subprocess.run(["script", "-qec", command + " --no-progress", "/dev/null"], **terminal)
    check(tty.returncode == 0 and "ETA" not in tty.stdout, "--no-progress: no bar on a terminal either")

# --- (d) errors -----------------------------------------------------------------------------------------
out = run(TRAIN + ["--plot", "curves.png"], expect=2)
check("--plot was removed: watch the curves with --tensorboard DIR" in out and "dptrain_plot.py" in out,
      "--plot FILE: one line saying where the curves went")
open("a_file", "w").close()
out = run(TRAIN + ["--tensorboard", "a_file"], expect=2)
check("--tensorboard a_file: exists and is not a directory" in out, "--tensorboard on a file: one clear error")
