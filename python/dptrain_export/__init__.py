"""PyTorch models as training programs compiled ahead of time, for `dptrain train --model step.pt2`.

    import torch
    from dptrain_export import export_training_step

    model = Net()
    export_training_step(model, torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)),
                         loss="cross_entropy", path="net-step.pt2")

The package holds two programs compiled by AOTInductor (torch.export, then ahead-of-time
compilation on this machine, for its CPU or GPU):
  "train"  (inputs, targets) -> loss and one gradient per parameter, updating the buffers the
           step changes (BatchNorm's running statistics) in place: the forward, the loss and the
           backward of the model in one compiled function (torch.export's joint graph);
  "eval"   inputs -> outputs, the model in eval mode (evaluation, `dptrain infer`);
and, as metadata, what dptrain needs to drive them: parameter and buffer names (those of the
original model, so a trained state_dict loads back with model.load_state_dict), the order of the
train program's outputs, the input and target specs, the loss, and the PyTorch version. The
parameters' initial values are the model's at export time. The batch dimension is dynamic.

It runs wherever PyTorch is (and a C++ compiler, for AOTInductor), never on the cluster. Only torch
is needed. See docs/export.md.
"""
import contextlib
import json
import os
import shutil
import tempfile

import torch
import torch.nn.functional as F

FORMAT = 1


def _class_loss(function):
    """`function` as dptrain's --loss applies it: [B, T, V] scores of a language model for [B, T]
    token targets (the class dimension last) are scored as B*T tokens, the mean over all of them."""
    def loss(outputs, targets):
        if outputs.dim() == 3 and targets.dim() == 2 and not targets.is_floating_point():
            return function(outputs.flatten(0, 1), targets.flatten())
        return function(outputs, targets)
    loss.__name__ = function.__name__
    return loss


LOSSES = {
    "cross_entropy": _class_loss(F.cross_entropy),
    "nll": _class_loss(F.nll_loss),
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
}
PREFIX = "model."  # the wrapped model's attribute name in the training step's module


class _TrainingStep(torch.nn.Module):
    """The model and its loss as one module whose forward returns (loss,)."""

    def __init__(self, model, loss):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, inputs, targets):
        return (self.loss(self.model(inputs), targets),)


def _spec(tensor):
    return {"shape": list(tensor.shape[1:]), "dtype": str(tensor.dtype).replace("torch.", "")}


def _output_layout(joint):
    """The train program's outputs in order: ["loss", ""], then ["grad", parameter] per parameter.

    Buffers the step updates (BatchNorm's running statistics: BUFFER_MUTATION outputs of the joint
    graph) are not outputs of the compiled program: AOTInductor writes them into the buffer
    constants in place, which are dptrain's own tensors once it has bound them.
    """
    from torch.export.graph_signature import OutputKind

    layout, mutated = [], []
    for spec in joint.graph_signature.output_specs:
        if spec.kind == OutputKind.LOSS_OUTPUT:
            layout.append(["loss", ""])
        elif spec.kind == OutputKind.GRADIENT_TO_PARAMETER:
            layout.append(["grad", spec.target[len(PREFIX):]])
        elif spec.kind == OutputKind.BUFFER_MUTATION:
            mutated.append(spec.target[len(PREFIX):])
        else:
            raise ValueError(f"the training step has an output dptrain does not drive: {spec.kind} {spec.target}")
    if [kind for kind, _ in layout].count("loss") != 1:
        raise ValueError("the training step must return exactly one loss")
    return layout, mutated


def _compile(program, metadata, extra_options=None):
    # Parameters and buffers stay constants that dptrain replaces by its own tensors: never inlined
    # into kernels as values (small ones would be), never folded into what they compute at export
    # time (freezing; the joint graph's folding of uniform tensors would bake a zero-initialized
    # bias, a fresh running_var or num_batches_tracked into the program).
    # CPU kernels take their thread count at run time (each rank's OMP_NUM_THREADS / torch's
    # setting) instead of this machine's core count compiled in: with several ranks per node a
    # fixed count oversubscribes the cores (measured: 14x slower at 2 ranks on 2 cores).
    options = {"aot_inductor.package": True, "aot_inductor.metadata": metadata,
               "always_keep_tensor_constants": True, "freezing": False, "joint_graph_constant_folding": False,
               "cpp.dynamic_threads": True, **(extra_options or {})}
    module = program.module(check_guards=False) if hasattr(program, "module") else program
    args, kwargs = program.example_inputs
    return torch._inductor.aot_compile(module, args, kwargs, options=options)


def _attention_backend(device):
    """The scaled_dot_product_attention backend the training step is exported with.

    On the CPU the default goes wrong in the joint graph: its forward takes torch's decomposition
    of _scaled_dot_product_flash_attention_for_cpu (math attention, whose second output is the
    attention matrix) while its backward stays the flash kernel's, which reads that output as the
    logsumexp: the loss is right and every gradient below the first attention is not (PyTorch
    2.11; found by tests/cli/test_lm_equivalence.py). The math backend, from torch.export on (so
    the graph keeps the layout math attention returns), is exact; Inductor fuses it.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if device.type != "cpu":
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


GRADIENT_GROUP = "dptrain"  # the c10d group name dptrain registers its world communicator under


def _reduce_gradients_in_graph(joint, group):
    """Each gradient output of the joint graph all-reduced (average) inside the program.

    PyTorch's functional collectives: an all_reduce right after the node that computes a gradient
    (so the compiled backward launches it while it goes on with the layers before), and its
    wait_tensor just before the program returns. At run time libtorch's c10d op finds the group by
    `group`, which dptrain registers over its own communicator (docs/export.md).
    """
    from torch.export.graph_signature import OutputKind

    graph = joint.graph_module.graph
    output = next(n for n in graph.nodes if n.op == "output")
    results = list(output.args[0])
    for i, spec in enumerate(joint.graph_signature.output_specs):
        if spec.kind != OutputKind.GRADIENT_TO_PARAMETER:
            continue
        gradient = results[i]
        with graph.inserting_after(gradient):
            reduced = graph.call_function(torch.ops._c10d_functional.all_reduce.default, (gradient, "avg", group))
        reduced.meta["val"] = gradient.meta["val"]
        with graph.inserting_before(output):
            waited = graph.call_function(torch.ops._c10d_functional.wait_tensor.default, (reduced,))
        waited.meta["val"] = gradient.meta["val"]
        results[i] = waited
    output.args = (tuple(results),)
    graph.lint()
    joint.graph_module.recompile()


# Inductor schedules a wait_tensor wherever its input is ready, which can be right after its
# all_reduce (blocking the backward on it); these passes (deterministic, the same program on every
# rank) sink every wait to where its result is needed, the program's end, and raise each launch.
_OVERLAP_OPTIONS = {"reorder_for_compute_comm_overlap": True,
                    "reorder_for_compute_comm_overlap_passes": ["sink_waits", "raise_comms"]}


@contextlib.contextmanager
def _resolvable_group(name):
    """`name` resolvable while Inductor compiles (it looks each collective's group up; the group
    itself is never used): this process's default group if there is one, else a one-rank gloo group."""
    import torch.distributed as dist
    from torch._C._distributed_c10d import _register_process_group, _unregister_process_group

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    _register_process_group(name, dist.group.WORLD)
    try:
        yield
    finally:
        _unregister_process_group(name)
        if created:
            dist.destroy_process_group()


def export_training_step(model, example_inputs, example_targets, loss="cross_entropy", path="step.pt2",
                         dynamic_batch=True, reduce_gradients=False):
    """Exports `model` with `loss` as a training step and compiles it into the package `path`.

    model: a torch.nn.Module (its current parameters are the initial values);
    example_inputs / example_targets: one batch (first dimension = samples, at least 2);
    loss: a name in LOSSES or a callable (outputs, targets) -> scalar mean loss;
    dynamic_batch: any batch size at run time (else only the example's);
    reduce_gradients: the program all-reduces its gradients itself, each launched as soon as the
        compiled backward has computed it (overlapped with the rest of the backward), over the
        communicator dptrain registers as c10d group "dptrain"; else dptrain averages them after
        the step.
    Returns `path`.
    """
    from torch._inductor.package import package_aoti
    from torch.export.experimental import _export_forward_backward

    loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    if isinstance(loss, str) and loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: one of {sorted(LOSSES)} or a callable")
    if example_inputs.shape[0] < 2:
        raise ValueError("example batches need at least 2 samples (a batch of 1 would be specialized)")
    batch = torch.export.Dim("batch", min=2) if dynamic_batch else None
    # AOTInductor compiles the example's strides into its kernels, and dptrain runs the programs on
    # contiguous batches: a sliced example (windows[:, :-1], as LM code writes it) would make every
    # kernel read a contiguous batch with the slice's row stride, past its end.
    example_inputs, example_targets = example_inputs.contiguous(), example_targets.contiguous()

    was_training = model.training
    step = _TrainingStep(model, loss_fn).train()
    with _attention_backend(example_inputs.device):
        train_ep = torch.export.export(step, (example_inputs, example_targets),
                                       dynamic_shapes=({0: batch}, {0: batch}) if batch else None)
        joint = _export_forward_backward(train_ep)
    layout, mutated = _output_layout(joint)
    if reduce_gradients:
        from torch.distributed import _functional_collectives  # noqa: F401 (the collectives' fake kernels)

        _reduce_gradients_in_graph(joint, GRADIENT_GROUP)
    model.eval()
    eval_ep = torch.export.export(model, (example_inputs,), dynamic_shapes=({0: batch},) if batch else None)
    model.train(was_training)

    metadata = {
        "dptrain.format": str(FORMAT),
        "dptrain.torch_version": torch.__version__.split("+")[0],
        "dptrain.outputs": json.dumps(layout),
        "dptrain.parameters": json.dumps([n for n, _ in model.named_parameters()]),
        "dptrain.buffers": json.dumps([n for n, _ in model.named_buffers()]),
        "dptrain.mutated_buffers": json.dumps(mutated),
        "dptrain.inputs": json.dumps(_spec(example_inputs)),
        "dptrain.targets": json.dumps(_spec(example_targets)),
        "dptrain.loss": loss_name,
        "dptrain.dynamic_batch": "1" if batch else "0",
        "dptrain.gradient_group": GRADIENT_GROUP if reduce_gradients else "",
    }
    if not str(path).endswith(".pt2"):
        raise ValueError(f"the package path must end in .pt2: {path}")
    with _resolvable_group(GRADIENT_GROUP) if reduce_gradients else contextlib.nullcontext():
        files = {"train": _compile(joint, metadata, _OVERLAP_OPTIONS if reduce_gradients else None),
                 "eval": _compile(eval_ep, metadata)}
    # Written in a private directory under the package's own name (the archive's top folder is
    # named after the file), then moved into place: never half a package at `path`.
    directory = tempfile.mkdtemp(prefix=".dptrain-export-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        tmp = os.path.join(directory, os.path.basename(path))
        package_aoti(tmp, files)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return path
