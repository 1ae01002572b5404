"""kernels.c as torch operators (torch.library, namespace kfts_cpu_kernels), checked, traceable, differentiable.

    batch_norm_relu(pieces, members, skip, weight, bias, eps) -> (y, mean, var)
        relu(BatchNorm(x) + skip) with the batch's statistics (training), which it returns: mean and biased var
    batch_norm_relu_backward(dy, pieces, members, skip, weight, bias, mean, var, eps) -> (dinputs, dweight, dbias)
        its gradients: dinputs holds one per piece, then skip's where there is a skip
    normalize_relu(pieces, members, skip, scale, offset) -> y
        relu(scale x + offset + skip) per channel: BatchNorm with known statistics (inference)
    max_pool3(x) -> the max over 3 time steps ('same' length) of x, which is never negative (a ReLU's outputs)
    max_pool3_backward(x, grad, add) -> max_pool3's gradient from grad, plus add (optional)

Series are bf16 CPU tensors [batch, channels, height, time]; the operators hand them to C in channels-last
memory (copying those that are not). x is the member-major concatenation of `pieces` (an Inception module's
branches: [member 1: piece 1 ... piece n, member 2: ...]), which the kernels read where the pieces are. skip may
be None. weight, bias, scale, offset, mean and var are float32, one value per channel of x.

kernels.c trusts every pointer and size it gets. So each operator first checks its tensors, in its real and its
fake implementation alike, and a wrong one raises a ValueError naming the operator and the argument instead of
reaching C. The fake (meta) implementations let torch.compile and torch.export trace the operators without
running them; batch_norm_relu and max_pool3 have their gradients registered (register_autograd).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

NAMESPACE = "kfts_cpu_kernels"


def _load() -> ctypes.CDLL:
    here = Path(__file__).parent
    # setuptools builds kernels.c with a Python extension's file name; it is plain C, so any such name will do
    paths = sorted(here.glob("_kernels*.so"))
    if not paths:
        raise ImportError(
            f"kfts_cpu_kernels: no _kernels library in {here}: install the add-on from its wheel or "
            "source, which compiles kernels.c (a C compiler with OpenMP)"
        )
    try:
        library = ctypes.CDLL(str(paths[0]))
    except OSError as error:  # the dynamic loader's message names what is missing: libgomp.so.1, in practice
        raise ImportError(
            f"kfts_cpu_kernels: cannot load {paths[0].name}: {error}. The kernels use the OpenMP runtime torch's "
            "wheels load; where torch brings none, install the system's (Debian, Ubuntu: apt-get install libgomp1), "
            "or uninstall kfts-cpu-kernels"
        ) from error
    pointer, size, real = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    library.batch_norm_relu.argtypes = [
        pointer,
        size,
        size,
        pointer,
        pointer,
        size,
        size,
        pointer,
        pointer,
        real,
        pointer,
        pointer,
    ]
    library.batch_norm_relu_backward.argtypes = [
        pointer,
        pointer,
        size,
        size,
        pointer,
        pointer,
        pointer,
        size,
        size,
        pointer,
        pointer,
        pointer,
        pointer,
        real,
        pointer,
        pointer,
    ]
    library.normalize_relu.argtypes = [pointer, size, size, pointer, pointer, size, size, pointer, pointer]
    library.max_pool3.argtypes = [pointer, pointer, size, size, size]
    library.max_pool3_backward.argtypes = [pointer, pointer, pointer, pointer, size, size, size]
    return library


_library = _load()


# -- checks: everything kernels.c assumes ----------------------------------------------------------------------


def _fail(op: str, message: str):
    raise ValueError(f"{NAMESPACE}.{op}: {message}")


def _describe(t: torch.Tensor) -> str:
    return f"{t.dtype} {t.device.type} tensor of shape {list(t.shape)}"


def _check_series(op: str, name: str, t: torch.Tensor, shape=None) -> None:
    """t: a bf16 CPU tensor [batch, channels, height, time], of `shape` where given."""
    if t.dtype != torch.bfloat16 or t.device.type != "cpu" or t.dim() != 4:
        _fail(op, f"{name} must be a 4-D bfloat16 CPU tensor [batch, channels, height, time], not a {_describe(t)}")
    if shape is not None and list(t.shape) != list(shape):
        _fail(op, f"{name} must have the shape {list(shape)}, not {list(t.shape)}")


def _check_channels(op: str, name: str, t: torch.Tensor, channels: int) -> None:
    """t: float32 on the CPU, one value per channel."""
    if t.dtype != torch.float32 or t.device.type != "cpu" or t.dim() != 1 or t.shape[0] != channels:
        _fail(op, f"{name} must be a float32 CPU tensor of {channels} values (one per channel), not a {_describe(t)}")


def _check_input(op: str, pieces: list[torch.Tensor], members: int, skip: torch.Tensor | None) -> list[int]:
    """The shape [batch, channels, height, time] of x, the concatenation of `pieces`, which must all have one
    shape, each piece holding `members` equal blocks of channels; skip, where there is one, has x's shape."""
    if not pieces:
        _fail(op, "pieces is empty: it needs at least one tensor")
    _check_series(op, "pieces[0]", pieces[0])
    for i, piece in enumerate(pieces[1:], 1):
        _check_series(op, f"pieces[{i}]", piece, pieces[0].shape)
    batch, channels, height, width = pieces[0].shape
    if members < 1 or (len(pieces) > 1 and channels % members):
        _fail(op, f"members must be a positive number that divides each piece's {channels} channels, not {members}")
    if batch * height * width == 0:
        _fail(op, f"pieces hold no values (shape {[batch, channels, height, width]})")
    shape = [batch, len(pieces) * channels, height, width]
    if skip is not None:
        _check_series(op, "skip", skip, shape)
    return shape


def _channels_last(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.contiguous(memory_format=torch.channels_last) if t is not None else None


def _empty_series(shape, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.bfloat16, device=like.device, memory_format=torch.channels_last)


def _pointer(t: torch.Tensor | None) -> int | None:
    return t.data_ptr() if t is not None else None  # None: C's NULL


def _pointers(tensors: list[torch.Tensor]) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


# -- BatchNorm + ReLU --------------------------------------------------------------------------------------------


@torch.library.custom_op(
    f"{NAMESPACE}::batch_norm_relu",
    mutates_args=(),
    schema="(Tensor[] pieces, int members, Tensor? skip, Tensor weight, Tensor bias, float eps)"
    " -> (Tensor, Tensor, Tensor)",
)
def batch_norm_relu(pieces, members, skip, weight, bias, eps):
    shape = _check_batch_norm_relu(pieces, members, skip, weight, bias, eps)
    pieces, skip = [_channels_last(p) for p in pieces], _channels_last(skip)
    y = _empty_series(shape, pieces[0])
    mean, var = torch.empty(shape[1]), torch.empty(shape[1])
    weight, bias = weight.contiguous(), bias.contiguous()
    _library.batch_norm_relu(
        _pointers(pieces),
        len(pieces),
        members,
        _pointer(skip),
        y.data_ptr(),
        shape[0] * shape[2] * shape[3],
        shape[1],
        weight.data_ptr(),
        bias.data_ptr(),
        eps,
        mean.data_ptr(),
        var.data_ptr(),
    )
    return y, mean, var


def _check_batch_norm_relu(pieces, members, skip, weight, bias, eps) -> list[int]:
    shape = _check_input("batch_norm_relu", pieces, members, skip)
    _check_channels("batch_norm_relu", "weight", weight, shape[1])
    _check_channels("batch_norm_relu", "bias", bias, shape[1])
    if not eps >= 0:
        _fail("batch_norm_relu", f"eps must be 0 or more, not {eps}")
    return shape


@batch_norm_relu.register_fake
def _(pieces, members, skip, weight, bias, eps):
    shape = _check_batch_norm_relu(pieces, members, skip, weight, bias, eps)
    return _empty_series(shape, pieces[0]), weight.new_empty(shape[1]), weight.new_empty(shape[1])


@torch.library.custom_op(
    f"{NAMESPACE}::batch_norm_relu_backward",
    mutates_args=(),
    schema="(Tensor dy, Tensor[] pieces, int members, Tensor? skip, Tensor weight, Tensor bias, "
    "Tensor mean, Tensor var, float eps) -> (Tensor[], Tensor, Tensor)",
)
def batch_norm_relu_backward(dy, pieces, members, skip, weight, bias, mean, var, eps):
    shape = _check_batch_norm_relu_backward(dy, pieces, members, skip, weight, bias, mean, var, eps)
    pieces, skip, dy = [_channels_last(p) for p in pieces], _channels_last(skip), _channels_last(dy)
    dpieces = [torch.empty_like(p) for p in pieces]
    dskip = torch.empty_like(skip) if skip is not None else None
    dweight, dbias = torch.empty(shape[1]), torch.empty(shape[1])
    weight, bias, mean, var = (t.contiguous() for t in (weight, bias, mean, var))
    _library.batch_norm_relu_backward(
        dy.data_ptr(),
        _pointers(pieces),
        len(pieces),
        members,
        _pointer(skip),
        _pointers(dpieces),
        _pointer(dskip),
        shape[0] * shape[2] * shape[3],
        shape[1],
        weight.data_ptr(),
        bias.data_ptr(),
        mean.data_ptr(),
        var.data_ptr(),
        eps,
        dweight.data_ptr(),
        dbias.data_ptr(),
    )
    return dpieces + ([dskip] if dskip is not None else []), dweight, dbias


def _check_batch_norm_relu_backward(dy, pieces, members, skip, weight, bias, mean, var, eps) -> list[int]:
    shape = _check_batch_norm_relu(pieces, members, skip, weight, bias, eps)
    _check_series("batch_norm_relu_backward", "dy", dy, shape)
    _check_channels("batch_norm_relu_backward", "mean", mean, shape[1])
    _check_channels("batch_norm_relu_backward", "var", var, shape[1])
    return shape


@batch_norm_relu_backward.register_fake
def _(dy, pieces, members, skip, weight, bias, mean, var, eps):
    shape = _check_batch_norm_relu_backward(dy, pieces, members, skip, weight, bias, mean, var, eps)
    inputs = pieces + ([skip] if skip is not None else [])
    return (
        [torch.empty_like(_channels_last(t)) for t in inputs],
        weight.new_empty(shape[1]),
        weight.new_empty(shape[1]),
    )


def _save_batch_norm_relu(ctx, inputs, output):
    pieces, ctx.members, skip, weight, bias, ctx.eps = inputs
    _, mean, var = output
    ctx.pieces = len(pieces)
    ctx.save_for_backward(skip, weight, bias, mean, var, *pieces)
    ctx.mark_non_differentiable(mean, var)


def _batch_norm_relu_gradient(ctx, dy, _mean, _var):
    skip, weight, bias, mean, var, *pieces = ctx.saved_tensors
    dinputs, dweight, dbias = batch_norm_relu_backward(
        dy.to(torch.bfloat16), pieces, ctx.members, skip, weight, bias, mean, var, ctx.eps
    )
    dskip = dinputs[ctx.pieces] if skip is not None else None
    return list(dinputs[: ctx.pieces]), None, dskip, dweight, dbias, None


batch_norm_relu.register_autograd(_batch_norm_relu_gradient, setup_context=_save_batch_norm_relu)


@torch.library.custom_op(
    f"{NAMESPACE}::normalize_relu",
    mutates_args=(),
    schema="(Tensor[] pieces, int members, Tensor? skip, Tensor scale, Tensor offset) -> Tensor",
)
def normalize_relu(pieces, members, skip, scale, offset):
    shape = _check_normalize_relu(pieces, members, skip, scale, offset)
    pieces, skip = [_channels_last(p) for p in pieces], _channels_last(skip)
    y = _empty_series(shape, pieces[0])
    scale, offset = scale.contiguous(), offset.contiguous()
    _library.normalize_relu(
        _pointers(pieces),
        len(pieces),
        members,
        _pointer(skip),
        y.data_ptr(),
        shape[0] * shape[2] * shape[3],
        shape[1],
        scale.data_ptr(),
        offset.data_ptr(),
    )
    return y


def _check_normalize_relu(pieces, members, skip, scale, offset) -> list[int]:
    shape = _check_input("normalize_relu", pieces, members, skip)
    _check_channels("normalize_relu", "scale", scale, shape[1])
    _check_channels("normalize_relu", "offset", offset, shape[1])
    return shape


@normalize_relu.register_fake
def _(pieces, members, skip, scale, offset):
    return _empty_series(_check_normalize_relu(pieces, members, skip, scale, offset), pieces[0])


# -- the max-pool --------------------------------------------------------------------------------------------


@torch.library.custom_op(f"{NAMESPACE}::max_pool3", mutates_args=(), schema="(Tensor x) -> Tensor")
def max_pool3(x):
    _check_series("max_pool3", "x", x)
    x = _channels_last(x)
    batch, channels, height, width = x.shape
    out = torch.empty_like(x)
    _library.max_pool3(x.data_ptr(), out.data_ptr(), batch * height, width, channels)
    return out


@max_pool3.register_fake
def _(x):
    _check_series("max_pool3", "x", x)
    return torch.empty_like(_channels_last(x))


@torch.library.custom_op(
    f"{NAMESPACE}::max_pool3_backward", mutates_args=(), schema="(Tensor x, Tensor grad, Tensor? add) -> Tensor"
)
def max_pool3_backward(x, grad, add):
    _check_max_pool3_backward(x, grad, add)
    x, grad, add = _channels_last(x), _channels_last(grad), _channels_last(add)
    batch, channels, height, width = x.shape
    dx = torch.empty_like(x)
    _library.max_pool3_backward(
        x.data_ptr(), grad.data_ptr(), _pointer(add), dx.data_ptr(), batch * height, width, channels
    )
    return dx


def _check_max_pool3_backward(x, grad, add) -> None:
    _check_series("max_pool3_backward", "x", x)
    _check_series("max_pool3_backward", "grad", grad, x.shape)
    if add is not None:
        _check_series("max_pool3_backward", "add", add, x.shape)


@max_pool3_backward.register_fake
def _(x, grad, add):
    _check_max_pool3_backward(x, grad, add)
    return torch.empty_like(_channels_last(x))


def _save_max_pool3(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _max_pool3_gradient(ctx, grad):
    (x,) = ctx.saved_tensors
    return max_pool3_backward(x, grad.to(torch.bfloat16), None)


max_pool3.register_autograd(_max_pool3_gradient, setup_context=_save_max_pool3)
