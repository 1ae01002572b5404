"""The CPU kernels add-on (addons/kfts-cpu-kernels): its operators against torch's, their checks, opcheck and
torch.compile, and kfts's InceptionTime network with the add-on against the network without it."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from kfts.algorithms.inception_time import network
from kfts.algorithms.inception_time.network import (
    InceptionNetworks,
    TorchLayers,
    concatenate,
)
from kfts_cpu_kernels import ops
from kfts_cpu_kernels.inception_time import Layers, applies

LAYERS = Layers(TorchLayers())  # the add-on's layers on kfts's own, as kfts's hook builds them


def series(*shape, low=None) -> torch.Tensor:
    x = torch.randn(shape)
    return (x.clamp_min(low) if low is not None else x).bfloat16().contiguous(memory_format=torch.channels_last)


def test_kfts_runs_its_network_on_the_installed_add_on(monkeypatch):
    """make setup installs the add-on: kfts's hook found it through its entry point, built on torch's layers.
    Without an add-on the hook gives torch's layers."""
    assert type(network.LAYERS) is Layers and type(network.LAYERS.fallback) is TorchLayers
    monkeypatch.setattr(network, "entry_points", lambda **selection: [])
    assert type(network.installed_layers()) is TorchLayers


def test_an_add_on_whose_kernels_cannot_load_leaves_the_network_to_torch(tmp_path):
    """Where the dynamic loader finds no OpenMP runtime for the kernels (a torch built without GNU OpenMP, no
    system libgomp1), importing the add-on says what to install, and kfts warns and runs torch's layers."""
    broken = tmp_path / "kfts_cpu_kernels"
    shutil.copytree(Path(ops.__file__).parent, broken, ignore=shutil.ignore_patterns("__pycache__"))
    [library] = broken.glob("_kernels*.so")
    # the same library needing a runtime of a name no system has: what the loader meets where libgomp.so.1 is missing
    needed = library.read_bytes()
    assert needed.count(b"libgomp.so.1\0") == 1
    library.write_bytes(needed.replace(b"libgomp.so.1\0", b"libgomx.so.1\0"))
    check = "from kfts.algorithms.inception_time import network; print(type(network.LAYERS).__name__)"
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))  # ahead of the installed one
    result = subprocess.run(
        [sys.executable, "-c", check], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout == "TorchLayers\n", result.stderr
    assert "libgomx.so.1: cannot open shared object file" in result.stderr
    assert "apt-get install libgomp1" in result.stderr


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("length", [1, 2, 3, 50])
def test_max_pool_of_relu_outputs_is_max_pool2d(dtype, length):
    """The pool of every module but the first, on a ReLU's outputs: max_pool2d's values, and its gradient, which
    goes to the first maximum of each window. A ReLU's outputs tie often (zeros, -0.0 among them), so these do."""
    torch.manual_seed(0)
    values = torch.randint(-2, 4, (4, 6, 1, length), dtype=torch.float64)
    x = torch.where(values == -1, -0.0, values.clamp_min(0)).to(dtype).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(x.shape, dtype=torch.float64)
    reference, fast = x.to(torch.float64, copy=True).requires_grad_(), x.clone().requires_grad_()
    expected = torch.nn.functional.max_pool2d(reference, (1, 3), stride=1, padding=(0, 1))
    expected.backward(grad)
    got = LAYERS.max_pool(fast, non_negative=True)[1]
    got.backward(grad.to(dtype))
    assert torch.equal(got.double(), expected)
    # a gradient sums up to three outputs' gradients: max_pool2d's, up to the rounding of that sum
    atol = 8 * torch.finfo(dtype).eps * grad.abs().max().item()
    torch.testing.assert_close(fast.grad.double(), reference.grad, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_max_pool_fork_passes_its_input_on_and_adds_both_gradients(dtype):
    """An Inception module's input feeds its bottleneck and its max-pool: max_pool hands on the input for the
    first, and x's gradient is the sum of both consumers' (one pass in bf16 on CPUs)."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, 1, 20, dtype=torch.float64).clamp_min(0).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    reference, fast = x.to(torch.float64, copy=True).requires_grad_(), x.clone().requires_grad_()
    scale = torch.randn(1, 6, 1, 1, dtype=torch.float64)  # the other consumer: x * scale
    grad = torch.randn(x.shape, dtype=torch.float64)

    def consumers(x, pool):
        passed, pooled = pool(x)
        return passed * scale.to(x.dtype) + pooled

    expected = consumers(reference, lambda x: (x, torch.nn.functional.max_pool2d(x, (1, 3), 1, (0, 1))))
    expected.backward(grad)
    got = consumers(fast, lambda x: LAYERS.max_pool(x, non_negative=True))
    got.backward(grad.to(dtype))
    atol = 8 * torch.finfo(dtype).eps * reference.grad.abs().max().item()
    torch.testing.assert_close(fast.grad.double(), reference.grad, rtol=0, atol=atol)


@pytest.mark.parametrize("with_skip", [False, True])
@pytest.mark.parametrize(
    "shape,mean,pieces,members",
    [
        ((16, 12, 1, 50), 0.0, 1, 1),
        ((2, 6, 1, 1), 0.0, 1, 1),
        ((8, 4, 1, 20), 1000.0, 1, 1),
        ((8, 24, 1, 30), 0.0, 4, 3),
    ],
)
def test_batch_norm_relu_is_batch_norm_then_relu(shape, mean, pieces, members, with_skip):
    """Outputs, gradients and running statistics of BatchNorm2d then ReLU (with a shortcut's addition before
    the ReLU, or without), against float64 on the same bf16 inputs: to bf16's precision where the result is
    bf16, to float's where it is float. Two values per channel are the fewest that can be normalized; a mean of
    1000 with unit spread must lose nothing to cancellation. The input may come in pieces, an Inception
    module's branches, normalized as their member-major concatenation, with a gradient for each piece."""
    torch.manual_seed(0)
    piece_shape = (shape[0], shape[1] // pieces, *shape[2:])
    xs = [
        (torch.randn(piece_shape) + mean).bfloat16().contiguous(memory_format=torch.channels_last)
        for _ in range(pieces)
    ]
    skip = torch.randn(shape).bfloat16().contiguous(memory_format=torch.channels_last) if with_skip else None
    grad = torch.randn(shape).bfloat16()
    norm = torch.nn.BatchNorm2d(shape[1])
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    reference = copy.deepcopy(norm).double()
    fast = [x.clone().requires_grad_() for x in xs] + ([skip.clone().requires_grad_()] if with_skip else [])
    slow = [t.detach().double().requires_grad_() for t in fast]
    assert applies(fast[0])

    y = LAYERS.batch_norm_relu(norm, fast[:pieces], members, skip=fast[pieces] if with_skip else None)
    y.backward(grad)
    expected = torch.relu(reference(concatenate(slow[:pieces], members)) + (slow[-1] if with_skip else 0))
    expected.backward(grad.double())

    bf16 = torch.finfo(torch.bfloat16).eps
    assert y.dtype == torch.bfloat16 and all(t.grad.dtype == torch.bfloat16 for t in fast)
    torch.testing.assert_close(y.double(), expected, rtol=bf16, atol=bf16)
    for got, want in zip(fast, slow):
        torch.testing.assert_close(got.grad.double(), want.grad, rtol=0, atol=2 * bf16 * want.grad.abs().max().item())
    for name in ("weight", "bias"):
        expected_grad = getattr(reference, name).grad
        torch.testing.assert_close(
            getattr(norm, name).grad.double(), expected_grad, rtol=1e-5, atol=1e-5 * expected_grad.abs().max().item()
        )
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(norm, name).double(), getattr(reference, name), rtol=1e-5, atol=1e-6)
    assert norm.num_batches_tracked == 1


@pytest.mark.parametrize("with_skip", [False, True])
@pytest.mark.parametrize("shape,pieces,members", [((16, 12, 1, 50), 1, 1), ((8, 24, 1, 30), 4, 3)])
def test_batch_norm_relu_in_evaluation_uses_the_running_statistics(shape, pieces, members, with_skip):
    """The validation pass and predictions: an eval-mode BatchNorm without gradients normalizes with its running
    statistics, against float64 to bf16's precision, and leaves them as they are."""
    torch.manual_seed(0)
    xs = [
        (3 * torch.randn(shape[0], shape[1] // pieces, *shape[2:]) + 1)
        .bfloat16()
        .contiguous(memory_format=torch.channels_last)
        for _ in range(pieces)
    ]
    skip = torch.randn(shape).bfloat16().contiguous(memory_format=torch.channels_last) if with_skip else None
    norm = torch.nn.BatchNorm2d(shape[1]).eval()
    with torch.no_grad():
        for tensor, low, high in (
            (norm.running_mean, -1, 2),
            (norm.running_var, 0.5, 9),
            (norm.weight, 0.5, 2),
            (norm.bias, -1, 1),
        ):
            tensor.uniform_(low, high)
    reference = copy.deepcopy(norm).double()
    with torch.no_grad():
        y = LAYERS.batch_norm_relu(norm, xs, members, skip=skip)
        expected = torch.relu(
            reference(concatenate([x.double() for x in xs], members)) + (skip.double() if with_skip else 0)
        )
    bf16 = torch.finfo(torch.bfloat16).eps
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.double(), expected, rtol=bf16, atol=bf16)
    torch.testing.assert_close(norm.running_mean.double(), reference.running_mean)
    assert norm.num_batches_tracked == 0


def test_batch_norm_relu_gives_the_same_bits_every_run():
    """Its per-channel sums are split over threads and added in thread order, not in the order threads finish:
    a run is repeatable (training is, from a seed, as the resume and distributed tests rely on)."""
    torch.manual_seed(0)
    x = torch.randn(32, 64, 1, 40).bfloat16().contiguous(memory_format=torch.channels_last)
    grad = torch.randn(x.shape).bfloat16()
    threads = torch.get_num_threads()
    torch.set_num_threads(5)
    try:
        runs = []
        for _ in range(8):
            norm, fast_x = torch.nn.BatchNorm2d(64), x.clone().requires_grad_()
            LAYERS.batch_norm_relu(norm, [fast_x]).backward(grad)
            runs.append([fast_x.grad, norm.weight.grad, norm.bias.grad, norm.running_mean, norm.running_var])
    finally:
        torch.set_num_threads(threads)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0]))


def test_batch_norm_relu_leaves_batch_norms_it_cannot_run_to_torch():
    """The kernel takes float32 weights (as autocast leaves them): a network cast to bf16 whole, or a BatchNorm
    without weights, is normalized by torch itself, with its result."""
    torch.manual_seed(0)
    x = torch.randn(8, 4, 1, 10).bfloat16().contiguous(memory_format=torch.channels_last)
    for norm in (torch.nn.BatchNorm2d(4).bfloat16(), torch.nn.BatchNorm2d(4, affine=False)):
        expected = torch.relu(copy.deepcopy(norm)(x))
        assert torch.equal(LAYERS.batch_norm_relu(norm, [x]), expected)


def test_batch_norm_relu_refuses_one_value_per_channel_as_batch_norm_does():
    x = torch.randn(1, 4, 1, 1).bfloat16()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        LAYERS.batch_norm_relu(torch.nn.BatchNorm2d(4), [x])


@pytest.mark.parametrize("channels", [1, 3])
def test_only_modules_fed_by_a_relu_get_the_non_negative_max_pool(channels, monkeypatch):
    """The first module sees the raw series, negatives and all: the network computes what it computes with
    torch's max-pool everywhere (in bf16, where the fast pool runs; cast to bf16 whole, the network's
    BatchNorms are torch's in both)."""
    torch.manual_seed(0)
    net = InceptionNetworks(channels, 3, members=2, filters=4, depth=6).bfloat16().eval()
    x = torch.randn(5, channels, 30, dtype=torch.bfloat16)
    monkeypatch.setattr(network, "LAYERS", LAYERS)
    fast = net(x)
    monkeypatch.setattr(network, "LAYERS", TorchLayers())
    assert torch.equal(fast, net(x))


def test_max_pool3_operator_has_max_pool2d_values_and_gradient():
    """The operator on its own, differentiated through its registered gradient."""
    torch.manual_seed(0)
    x = series(4, 6, 1, 20, low=0).requires_grad_()
    reference = x.detach().double().requires_grad_()
    grad = torch.randn(x.shape, dtype=torch.float64)
    got, expected = ops.max_pool3(x), torch.nn.functional.max_pool2d(reference, (1, 3), stride=1, padding=(0, 1))
    got.backward(grad.bfloat16())
    expected.backward(grad)
    assert torch.equal(got.double(), expected)
    atol = 8 * torch.finfo(torch.bfloat16).eps * grad.abs().max().item()
    torch.testing.assert_close(x.grad.double(), reference.grad, rtol=0, atol=atol)


# -- what the operators refuse: before any pointer reaches C, in their real and fake implementations ----------


def _inputs():
    """Valid arguments: 4 pieces of 2 members (24 channels in all), a skip, per-channel float32 parameters."""
    pieces, skip = [series(8, 6, 1, 10) for _ in range(4)], series(8, 24, 1, 10)
    channel = torch.ones(24)
    return pieces, skip, channel


REFUSED = {
    "a float32 series": (
        lambda p, s, c: ops.max_pool3(p[0].float()),
        "max_pool3: x must be a 4-D bfloat16 CPU tensor [batch, channels, height, time], "
        "not a torch.float32 cpu tensor of shape [8, 6, 1, 10]",
    ),
    "a 3-D series": (lambda p, s, c: ops.max_pool3(p[0][:, :, 0]), "max_pool3: x must be a 4-D bfloat16"),
    "a gradient of another shape": (
        lambda p, s, c: ops.max_pool3_backward(p[0], p[0][:4], None),
        "max_pool3_backward: grad must have the shape [8, 6, 1, 10], not [4, 6, 1, 10]",
    ),
    "an add of another shape": (
        lambda p, s, c: ops.max_pool3_backward(p[0], p[0], s),
        "max_pool3_backward: add must have the shape [8, 6, 1, 10]",
    ),
    "no pieces": (lambda p, s, c: ops.batch_norm_relu([], 2, None, c, c, 1e-5), "batch_norm_relu: pieces is empty"),
    "pieces of two shapes": (
        lambda p, s, c: ops.batch_norm_relu([p[0], p[1][:, :4]], 2, None, c[:10], c[:10], 1e-5),
        "batch_norm_relu: pieces[1] must have the shape [8, 6, 1, 10], not [8, 4, 1, 10]",
    ),
    "members that do not divide a piece": (
        lambda p, s, c: ops.batch_norm_relu(p, 4, s, c, c, 1e-5),
        "batch_norm_relu: members must be a positive number that divides",
    ),
    "too few weights": (
        lambda p, s, c: ops.batch_norm_relu(p, 2, s, c[:6], c, 1e-5),
        "batch_norm_relu: weight must be a float32 CPU tensor of 24 values (one per channel), "
        "not a torch.float32 cpu tensor of shape [6]",
    ),
    "bf16 biases": (
        lambda p, s, c: ops.batch_norm_relu(p, 2, s, c, c.bfloat16(), 1e-5),
        "batch_norm_relu: bias must be a float32 CPU tensor of 24 values",
    ),
    "a skip of another shape": (
        lambda p, s, c: ops.batch_norm_relu(p, 2, s[:, :12], c, c, 1e-5),
        "batch_norm_relu: skip must have the shape [8, 24, 1, 10], not [8, 12, 1, 10]",
    ),
    "a negative eps": (lambda p, s, c: ops.batch_norm_relu(p, 2, s, c, c, -1.0), "batch_norm_relu: eps must be 0"),
    "no values": (
        lambda p, s, c: ops.batch_norm_relu([p[0][:0]], 1, None, c[:6], c[:6], 1e-5),
        "batch_norm_relu: pieces hold no values",
    ),
    "a gradient of the wrong shape": (
        lambda p, s, c: ops.batch_norm_relu_backward(s[:2], p, 2, s, c, c, c, c, 1e-5),
        "batch_norm_relu_backward: dy must have the shape [8, 24, 1, 10]",
    ),
    "float64 scales": (
        lambda p, s, c: ops.normalize_relu(p, 2, None, c.double(), c),
        "normalize_relu: scale must be a float32 CPU tensor of 24 values",
    ),
}


@pytest.mark.parametrize("implementation", ["real", "fake"])
@pytest.mark.parametrize("case", REFUSED, ids=str)
def test_the_operators_refuse_what_the_kernels_cannot_take_with_a_clear_error(case, implementation):
    call, message = REFUSED[case]
    mode = FakeTensorMode() if implementation == "fake" else None
    with mode or torch.no_grad():
        inputs = (
            lambda p, s, c: (
                ([mode.from_tensor(t) for t in p], mode.from_tensor(s), mode.from_tensor(c)) if mode else (p, s, c)
            )
        )(*_inputs())
        with pytest.raises(ValueError) as refused:
            call(*inputs)
    assert str(refused.value).startswith(f"kfts_cpu_kernels.{message}"), str(refused.value)


# -- opcheck: schemas, fake implementations, registered gradients, torch.compile's tracing ----------------------


def _opcheck_cases():
    torch.manual_seed(0)
    pieces, skip, channel = _inputs()
    weight, bias = torch.rand(24) + 0.5, torch.rand(24) - 0.5
    trainable = lambda *ts: [t.clone().requires_grad_() for t in ts]  # noqa: E731
    y, mean, var = ops.batch_norm_relu(pieces, 2, skip, weight, bias, 1e-5)
    x = series(8, 6, 1, 10, low=0)
    return [
        ("batch_norm_relu", ops.batch_norm_relu, (trainable(*pieces), 2, *trainable(skip, weight, bias), 1e-5)),
        ("batch_norm_relu one piece", ops.batch_norm_relu, (trainable(skip), 1, None, *trainable(weight, bias), 0.1)),
        (
            "batch_norm_relu_backward",
            ops.batch_norm_relu_backward,
            (series(8, 24, 1, 10), pieces, 2, skip, weight, bias, mean, var, 1e-5),
        ),
        (
            "batch_norm_relu_backward no skip",
            ops.batch_norm_relu_backward,
            (series(8, 24, 1, 10), pieces, 2, None, weight, bias, mean, var, 1e-5),
        ),
        ("normalize_relu", ops.normalize_relu, (pieces, 2, skip, weight, bias)),
        ("normalize_relu no skip", ops.normalize_relu, ([skip], 1, None, weight, bias)),
        ("max_pool3", ops.max_pool3, (x.clone().requires_grad_(),)),
        ("max_pool3_backward", ops.max_pool3_backward, (x, series(8, 6, 1, 10), series(8, 6, 1, 10))),
        ("max_pool3_backward no add", ops.max_pool3_backward, (x, series(8, 6, 1, 10), None)),
    ]


@pytest.mark.parametrize("case", range(9), ids=[name for name, _, _ in _opcheck_cases()])
def test_opcheck_passes_for_every_operator(case):
    _, op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args)


def test_the_layers_compile_with_torch_compile_and_compute_what_eager_computes():
    """A training step's pieces under torch.compile (fullgraph: no graph break falls back to eager): the fused
    operators are traced through their fake implementations and differentiated through their gradients."""
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(24)

    def block(x, branches):
        passed, pooled = LAYERS.max_pool(x, non_negative=True)
        return LAYERS.batch_norm_relu(norm, [b * passed + pooled for b in branches], members=2)

    x = series(8, 6, 1, 10, low=0)
    branches = [torch.rand(1, 6, 1, 1).bfloat16() for _ in range(4)]
    results = []
    for run in (block, torch.compile(block, backend="aot_eager", fullgraph=True)):
        inputs = [t.clone().requires_grad_() for t in (x, *branches)]
        y = run(inputs[0], inputs[1:])
        y.backward(torch.ones_like(y))
        results.append([y, *(t.grad for t in inputs), norm.weight.grad.clone()])
        norm.weight.grad = None
    for compiled, eager in zip(results[1], results[0]):
        torch.testing.assert_close(compiled, eager, rtol=0, atol=0)


# -- kfts's network with the add-on and without it ---------------------------------------------------------------


def _train_step(net, x, labels, layers, monkeypatch, dtype=torch.bfloat16):
    """The logits and gradients of one training step, in bf16 (autocast, as kfts trains on CPUs) or float64."""
    monkeypatch.setattr(network, "LAYERS", layers)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        logits = net(x.to(dtype if dtype == torch.float64 else torch.float32))
    torch.nn.functional.cross_entropy(logits.double().flatten(0, 1), labels.repeat_interleave(2)).backward()
    return logits.double(), {name: p.grad.double() for name, p in net.named_parameters()}


def _error(got: torch.Tensor, exact: torch.Tensor) -> float:
    return ((got - exact).norm() / exact.norm()).item()


def test_the_network_with_the_add_on_computes_what_it_computes_without(monkeypatch):
    """A bf16 training step and a validation pass, with the add-on's layers and with torch's, against the same
    network in float64: the add-on's logits, gradients and running statistics are as close to float64's as
    torch's own bf16 ones are (bf16's gradients, summed over a batch, are off by several percent either way)."""
    torch.manual_seed(0)
    net = InceptionNetworks(3, 4, members=2, filters=8, depth=6).train()
    twin, exact = copy.deepcopy(net), copy.deepcopy(net).double()
    x, labels = torch.randn(16, 3, 40), torch.randint(0, 4, (16,))
    fast, fast_grads = _train_step(net, x, labels, LAYERS, monkeypatch)
    plain, plain_grads = _train_step(twin, x, labels, TorchLayers(), monkeypatch)
    logits, grads = _train_step(exact, x, labels, TorchLayers(), monkeypatch, dtype=torch.float64)
    assert _error(fast, logits) <= 1.5 * _error(plain, logits) + 0.005
    for name, grad in grads.items():
        assert _error(fast_grads[name], grad) <= 1.5 * _error(plain_grads[name], grad) + 0.02, name
    for norm, twin_norm, exact_norm in zip(net.batch_norms(), twin.batch_norms(), exact.batch_norms()):
        for name in ("running_mean", "running_var"):
            got, torch_bf16, want = (getattr(n, name).double() for n in (norm, twin_norm, exact_norm))
            assert _error(got, want) <= 1.5 * _error(torch_bf16, want) + 0.005, name
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        monkeypatch.setattr(network, "LAYERS", LAYERS)
        fast = net.eval()(x).double()
        monkeypatch.setattr(network, "LAYERS", TorchLayers())
        plain = net(x).double()
    logits = exact.eval()(x.double())
    assert _error(fast, logits) <= 1.5 * _error(plain, logits) + 0.005
