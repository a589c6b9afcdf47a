"""Models exported from PyTorch and compiled ahead of time (python/dptrain_export, a .pt2 package)
train under `dptrain train` with no TorchScript, and end equal to PyTorch's own training of the same
model on the same batches in the same order (--no-shuffle, SGD with momentum, constant lr):

  (a) an MLP at world 1 and 2;
  (b) a conv + BatchNorm model at world 2, buffers included (DDP's rule: rank 0's running
      statistics, each rank normalizing its own half batch);
  (c) `dptrain infer` with the package (its eval program) equals the model in eval mode, and
      `--out` is a state_dict that model.load_state_dict(torch.load(...)) takes;
  (d) errors: data shaped unlike the export, a package of another PyTorch version, a compiled
      model that is not a training package.
"""
import json
import os
import sys
import zipfile

import torch

import package_models
from cli_helpers import check, run
from package_models import MLP, ConvBN, max_relative_difference, save_data

sys.path.insert(0, os.path.join(os.environ["DPTRAIN_SOURCE_DIR"], "python"))
from dptrain_export import export_training_step  # noqa: E402

B, LR, STEPS = 16, 0.05, 6


def reference(model, inputs, targets, world):
    return package_models.reference(model, inputs, targets, world, B, LR, STEPS)


def expect_equal(path, theirs, what, tolerance=1e-5):
    ours = torch.load(path)
    check(set(ours) == set(theirs), f"{what}: --out holds the model's names {sorted(ours)}")
    worst = max_relative_difference(ours, theirs)
    check(worst < tolerance, f"{what}: equal to PyTorch's training (max relative difference {worst:.1e})")


def train(package, data, world, out, extra=()):
    return run(["train", "--model", package, "--data", data, "--optimizer", "sgd", "--momentum", "0.9",
                "--lr", str(LR), "--lr-schedule", "constant", "--no-shuffle", "--batch-size", str(B),
                "--max-steps", str(STEPS), "--metrics", "", "--log-every", "2", "--out", out, *extra], np_=world)


# --- (a) MLP ------------------------------------------------------------------------------------------------
torch.manual_seed(0)
targets = torch.randint(0, 4, (2 * B * STEPS,))
inputs = torch.randn(4, 20)[targets] * 2 + torch.randn(2 * B * STEPS, 20)
save_data("clusters", inputs, targets)
torch.manual_seed(1)
mlp = MLP()
initial = {k: v.clone() for k, v in mlp.state_dict().items()}
export_training_step(mlp, inputs[:B], targets[:B], loss="cross_entropy", path="mlp.pt2")
check(os.path.getsize("mlp.pt2") > 0, f"exported mlp.pt2 ({os.path.getsize('mlp.pt2') / 1e6:.1f} MB)")
for world in (1, 2):
    out = train("mlp.pt2", "clusters", world, f"mlp_w{world}.pt")
    check("test accuracy" in out, f"world {world}: trained and evaluated with the package's eval program")
    mlp.load_state_dict(initial)
    expect_equal(f"mlp_w{world}.pt", reference(mlp, inputs, targets, world), f"MLP, world {world}")


# --- (b) conv + BatchNorm at world 2 ------------------------------------------------------------------
torch.manual_seed(2)
labels = torch.randint(0, 3, (2 * B * STEPS,))
images = torch.randn(2 * B * STEPS, 1, 8, 8) + labels.view(-1, 1, 1, 1).float()
save_data("images", images, labels)
torch.manual_seed(3)
convbn = ConvBN()
initial = {k: v.clone() for k, v in convbn.state_dict().items()}
export_training_step(convbn, images[:B], labels[:B], path="convbn.pt2")
train("convbn.pt2", "images", 2, "convbn_w2.pt")
trained = reference(convbn, images, labels, 2)
expect_equal("convbn_w2.pt", trained, "conv+BatchNorm, world 2 (buffers included)")

# Stopped after half the steps and resumed from the checkpoint: the same result.
train("convbn.pt2", "images", 2, "half.pt", ["--checkpoint-dir", "ckpt", "--stop-after-steps", str(STEPS // 2)])
train("convbn.pt2", "images", 2, "resumed.pt", ["--checkpoint-dir", "ckpt", "--resume"])
expect_equal("resumed.pt", trained, "conv+BatchNorm, world 2, stopped and resumed from a checkpoint")

# --- (c) inference with the eval program; the state_dict goes back into PyTorch -----------------------
convbn.load_state_dict(initial)
run(["infer", "--model", "convbn.pt2", "--data", "images", "--out", "logits.pt"], np_=2)
convbn.eval()
with torch.no_grad():
    theirs = convbn(images[:40])
ours = torch.load("logits.pt")
check(torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5), "dptrain infer with the package equals model.eval()(x)")
run(["infer", "--model", "convbn.pt2", "--data", "images", "--batch-size", "13", "--out", "logits13.pt"])
check(torch.allclose(torch.load("logits13.pt"), theirs, rtol=1e-4, atol=1e-5),
      "batches of 13, 13, 13 and 1 sample (below the export's minimum of 2) give the same outputs")
# The trained weights back in the package (--weights): its eval program reads the trained running
# statistics (nothing of the export's initial values folded into the compiled code).
run(["infer", "--model", "convbn.pt2", "--weights", "convbn_w2.pt", "--data", "images", "--out", "trained.pt"])
convbn.load_state_dict(trained)
with torch.no_grad():
    theirs = convbn.eval()(images[:40])
check(torch.allclose(torch.load("trained.pt"), theirs, rtol=1e-4, atol=1e-5),
      "dptrain infer --weights (the trained state_dict) equals the trained model in eval mode")
result = ConvBN().load_state_dict(torch.load("convbn_w2.pt"), strict=True)
check(not result.missing_keys and not result.unexpected_keys,
      "model.load_state_dict(torch.load(--out)) takes dptrain's result, every key matched")

# --- (d) errors -------------------------------------------------------------------------------------------
out = run(["train", "--model", "mlp.pt2", "--data", "images", "--max-steps", "1", "--metrics", ""], np_=2, expect=2)
check("mlp.pt2 takes inputs of shape [batch, 20] and dtype float32, the data gives [batch, 1, 8, 8] float32" in out,
      "data shaped unlike the export: one error naming both shapes")
out = run(["train", "--model", "mlp.pt2", "--data", "clusters", "--max-steps", "1", "--metrics", "", "--bucket-cap", "auto"],
          np_=2, expect=1)
check("--bucket-cap auto: mlp.pt2" in out and "averages its gradients after its compiled step" in out,
      "--bucket-cap auto with a package: one error saying why")
out = run(["train", "--model", "mlp.pt2", "--data", "clusters", "--max-steps", "1", "--metrics", "", "--overlap-optimizer"],
          np_=2, expect=1)
check("--overlap-optimizer: mlp.pt2 averages its gradients after its compiled step" in out,
      "--overlap-optimizer with a package: one error saying why")


def rewrite_metadata(source, target, change):
    """A copy of a package with its dptrain metadata changed (what another exporter would write)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("_metadata.json"):
                metadata = json.loads(data)
                change(metadata)
                data = json.dumps(metadata).encode()
            zout.writestr(item, data)


rewrite_metadata("mlp.pt2", "old.pt2", lambda m: m.update({"dptrain.torch_version": "2.9.0"}))
out = run(["train", "--model", "old.pt2", "--data", "clusters", "--max-steps", "1", "--metrics", ""], expect=1)
check("old.pt2 was exported with PyTorch 2.9.0, dptrain runs libtorch 2.11.0: export it again" in out,
      "a package of another PyTorch version: one error naming both versions")
rewrite_metadata("mlp.pt2", "plain.pt2", lambda m: [m.pop(k) for k in list(m) if k.startswith("dptrain.")])
out = run(["train", "--model", "plain.pt2", "--data", "clusters", "--max-steps", "1", "--metrics", ""], expect=1)
check("plain.pt2 lacks 'dptrain.format': not a training package written by python/dptrain_export" in out,
      "a compiled model that is not a training package: one clear error")
out = run(["infer", "--model", "convbn.pt2", "--weights", "mlp_w1.pt", "--data", "images", "--out", "x.pt"], expect=1)
check("--weights mlp_w1.pt does not fit the model: state dict has no entry for 'conv.weight'" in out,
      "--weights of another model: one error naming the file and the first missing key")
