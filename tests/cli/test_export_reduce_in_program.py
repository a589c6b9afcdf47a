"""A package exported with reduce_gradients=True all-reduces each gradient inside its compiled
backward (PyTorch's functional all_reduce, launched where the gradient is computed, waited for at
the program's end) over dptrain's communicator, registered as the c10d group the package names:

  (a) the compiled program holds the collectives, the first launched before the backward's last
      kernel (so a reduction overlaps the rest of the backward);
  (b) an MLP at world 1, 2 and 3 and a conv+BatchNorm model at world 2 train equal to PyTorch's
      own training (1e-5) and to the same model's package that dptrain averages after the step;
  (c) gradient accumulation (every micro-batch reduced: the average of sums is the sum of averages).
"""
import os
import sys
import zipfile

import torch

import package_models
from cli_helpers import check, run
from package_models import MLP, ConvBN, max_relative_difference, save_data

sys.path.insert(0, os.path.join(os.environ["DPTRAIN_SOURCE_DIR"], "python"))
from dptrain_export import export_training_step  # noqa: E402

B, LR, STEPS = 12, 0.05, 6


def reference(model, inputs, targets, world, accumulation=1):
    return package_models.reference(model, inputs, targets, world, B, LR, STEPS, accumulation)


def worst_difference(path, theirs):
    ours = torch.load(path)
    check(set(ours) == set(theirs), f"{path} holds the model's names")
    return max_relative_difference(ours, theirs)


def train(package, data, world, out, extra=()):
    return run(["train", "--model", package, "--data", data, "--optimizer", "sgd", "--momentum", "0.9",
                "--lr", str(LR), "--lr-schedule", "constant", "--no-shuffle", "--batch-size", str(B),
                "--max-steps", str(STEPS), "--metrics", "", "--log-every", "2", "--out", out, *extra], np_=world)


torch.manual_seed(0)
n = 3 * B * STEPS * 2
targets = torch.randint(0, 4, (n,))
inputs = torch.randn(4, 20)[targets] * 2 + torch.randn(n, 20)
save_data("clusters", inputs, targets, test=36)
torch.manual_seed(1)
mlp = MLP((20, 32, 32, 4))
initial = {k: v.clone() for k, v in mlp.state_dict().items()}
export_training_step(mlp, inputs[:B], targets[:B], path="mlp_reduced.pt2", reduce_gradients=True)
export_training_step(mlp, inputs[:B], targets[:B], path="mlp_after.pt2")

# --- (a) the collectives are in the compiled program, launched during its backward ------------------------
with zipfile.ZipFile("mlp_reduced.pt2") as package:
    sources = [name for name in package.namelist() if "/train/" in name and name.endswith(".cpp")]
    code = "\n".join(package.read(name).decode() for name in sources)
calls = [line.strip() for line in code.splitlines() if "_c10d_functional_" in line and "AOTI_TORCH_ERROR_CODE_CHECK" in line]
launches = [i for i, line in enumerate(code.splitlines()) if "_c10d_functional_all_reduce_(" in line]
waits = [i for i, line in enumerate(code.splitlines()) if "_c10d_functional_wait_tensor(" in line]
kernels = [i for i, line in enumerate(code.splitlines()) if line.strip().startswith("cpp_fused_")]
check(len(launches) == 6 and len(waits) == 6, f"the train program all-reduces and waits for each of the 6 gradients "
      f"({len(launches)} all_reduce, {len(waits)} wait_tensor calls in {len(sources)} source file(s))")
check(kernels and launches[0] < kernels[-1] and max(launches) < min(waits),
      f"the first all_reduce (line {launches[0]}) comes before the backward's last kernel (line {kernels[-1] if kernels else '-'}),"
      " every wait after every launch")

# --- (b) equal to PyTorch's training and to the package averaged after the step ---------------------------
for world in (1, 2, 3):
    out = train("mlp_reduced.pt2", "clusters", world, f"reduced_w{world}.pt")
    check("all-reduces its gradients inside its compiled backward (c10d group 'dptrain')" in out,
          f"world {world}: the log says where the gradients are reduced")
    train("mlp_after.pt2", "clusters", world, f"after_w{world}.pt")
    mlp.load_state_dict(initial)
    theirs = reference(mlp, inputs, targets, world)
    worst = worst_difference(f"reduced_w{world}.pt", theirs)
    check(worst < 1e-5, f"MLP, world {world}: equal to PyTorch's training (max relative difference {worst:.1e})")
    after = torch.load(f"after_w{world}.pt")
    worst = worst_difference(f"reduced_w{world}.pt", after)
    check(worst < 1e-6, f"MLP, world {world}: equal to the package averaged after the step ({worst:.1e})")


torch.manual_seed(2)
labels = torch.randint(0, 3, (2 * B * STEPS,))
images = torch.randn(2 * B * STEPS, 1, 8, 8) + labels.view(-1, 1, 1, 1).float()
save_data("images", images, labels, test=36)
torch.manual_seed(3)
convbn = ConvBN()
export_training_step(convbn, images[:B], labels[:B], path="convbn_reduced.pt2", reduce_gradients=True)
train("convbn_reduced.pt2", "images", 2, "convbn_w2.pt")
worst = worst_difference("convbn_w2.pt", reference(convbn, images, labels, 2))
check(worst < 1e-5, f"conv+BatchNorm, world 2, buffers included: equal to PyTorch's training ({worst:.1e})")

# --- (c) accumulation: each micro-batch's gradients reduced, the step equal ------------------------------
mlp.load_state_dict(initial)
train("mlp_reduced.pt2", "clusters", 2, "accumulated.pt", ["--accumulation-steps", "2"])
worst = worst_difference("accumulated.pt", reference(mlp, inputs, targets, 2, accumulation=2))
check(worst < 1e-5, f"MLP, world 2, 2 micro-batches a step: equal to PyTorch's training ({worst:.1e})")
out = run(["train", "--model", "mlp_reduced.pt2", "--data", "clusters", "--max-steps", "1", "--metrics", "",
           "--overlap-optimizer"], np_=2, expect=1)
check("--overlap-optimizer: mlp_reduced.pt2 all-reduces its gradients inside its compiled program" in out,
      "--overlap-optimizer with such a package: one error saying where its gradients are reduced")
print("ok: gradients reduced inside the compiled program")
