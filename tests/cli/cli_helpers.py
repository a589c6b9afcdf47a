"""Helpers of the Python CLI tests: run dptrain, read MNIST IDX files, compare models."""
import gzip
import os
import subprocess
import sys

import numpy as np
import torch

DPTRAIN = os.path.join(os.environ["DPTRAIN_BIN"], "dptrain")
MPIRUN = os.environ["DPTRAIN_MPIRUN"]
DATA = os.environ.get("DPTRAIN_TEST_DATA", "/usr/share/datasets/fashion-mnist")
LIMIT = int(os.environ.get("DPTRAIN_CLI_TIMEOUT", "60"))
_last_run = {"cmd": "", "output": ""}  # printed when a check fails, which is usually about it


def run(args, np_=None, expect=0):
    """Runs dptrain (under mpirun -np np_ when given); returns the combined output."""
    cmd = ([MPIRUN, "-np", str(np_)] if np_ else []) + [DPTRAIN] + [str(a) for a in args]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=LIMIT)
    if proc.returncode != expect:
        print(proc.stdout)
        sys.exit(f"FAIL: exit code {proc.returncode}, expected {expect}: {' '.join(cmd)}")
    _last_run.update(cmd=" ".join(cmd), output=proc.stdout)
    return proc.stdout


def read_idx_images(path, limit=None):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, h, w)
    if limit:
        images = images[:limit]
    return torch.from_numpy(images.astype(np.float32) / 255.0)


def load_state(path):
    module = torch.jit.load(path)
    return {k: v for k, v in module.state_dict().items()}


def check(condition, message):
    if not condition:
        if _last_run["output"]:
            print(f"output of the last command run ({_last_run['cmd']}):\n{_last_run['output']}")
        sys.exit("FAIL: " + message)
    print("ok:", message, flush=True)
