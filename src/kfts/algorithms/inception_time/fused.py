"""BatchNorm+ReLU and the max-pool in one pass each, forward and backward, for bf16 on CPUs.

In eager torch the bf16 step spends more time on these memory-bound layers than on the convolutions: BatchNorm,
ReLU and their gradients are five passes over every module's output, and the max-pool's gradient about ten.
fused_kernels.c does each in one pass (two where batch statistics are summed first), and the shortcuts'
BatchNorm, addition and ReLU likewise; BatchNorm reads an Inception module's branches where they are, without
concatenating them first. Evaluation without gradients (the per-epoch validation pass) normalizes with the
running statistics in one pass. The wheel builds it as a plain shared library, called here through ctypes.

Where it does not apply (fp32, fp16, GPUs) or was not built (the build is optional: a
platform without a C compiler or OpenMP installs kfts without it), the layers run as torch's own ops: the same
function, slower. `unavailable` says why it is missing, for the tests that require it.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


def _load() -> tuple[ctypes.CDLL | None, str | None]:
    here = Path(__file__).parent
    paths = [here / f"_fused_kernels{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((p for p in paths if p.exists()), None)
    if path is None:
        return None, f"no _fused_kernels library in {here} (built with the wheel where a C compiler and OpenMP are)"
    try:
        library = ctypes.CDLL(str(path))
    except OSError as e:
        return None, f"{path.name} does not load: {e}"
    pointer, size, real = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    library.batch_norm_relu.argtypes = [pointer, size, size, pointer, pointer, size, size, pointer, pointer, real,
                                        pointer, pointer]
    library.batch_norm_relu_backward.argtypes = [pointer, pointer, size, size, pointer, pointer, pointer, size,
                                                 size, pointer, pointer, pointer, pointer, real, pointer, pointer]
    library.normalize_relu.argtypes = [pointer, size, size, pointer, pointer, size, size, pointer, pointer]
    library.max_pool3.argtypes = [pointer, pointer, size, size, size]
    library.max_pool3_backward.argtypes = [pointer, pointer, pointer, pointer, size, size, size]
    return library, None


_library, unavailable = _load()


def applies(x: torch.Tensor) -> bool:
    """Whether the fused kernels run on x: bf16 on a CPU, with the library built."""
    return _library is not None and x.device.type == "cpu" and x.dtype == torch.bfloat16


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _pointer(x: torch.Tensor | None) -> int | None:
    return x.data_ptr() if x is not None else None  # None: C's NULL


def concatenate(pieces: list[torch.Tensor], members: int) -> torch.Tensor:
    """The pieces' channels concatenated member by member ([member 1: piece 1..n, member 2: ...]), as the
    next grouped convolution expects, into a channels-last tensor. One copy: the cat itself writes the
    member-major order (in channels-last memory a [batch, channels, 1, time] tensor is laid out
    [batch, 1, time, channels])."""
    if len(pieces) == 1:
        return pieces[0]
    batch, _, _, length = pieces[0].shape
    parts = [p.permute(0, 2, 3, 1).unflatten(-1, (members, 1, -1)) for p in pieces]  # [batch, 1, time, m, 1, w]
    return torch.cat(parts, dim=-2).view(batch, 1, length, -1).permute(0, 3, 1, 2)


def batch_norm_relu(norm: nn.BatchNorm2d, pieces: list[torch.Tensor], members: int = 1,
                    skip: torch.Tensor | None = None) -> torch.Tensor:
    """relu(norm(x)), or relu(norm(x) + skip) (a residual connection), x being `concatenate(pieces, members)`:
    in training with the batch's statistics, updating norm's running statistics as norm would; in evaluation
    without gradients, with the running statistics. The fused kernels read the pieces where they are: the
    concatenation is never written out."""
    x = pieces[0]
    count = x.numel() // x.shape[1]
    # the kernels take bf16 CPU tensors and float32 affine parameters (as autocast leaves them); anything else
    # runs as torch's ops, which also raise torch's errors (one value per channel cannot be normalized)
    fusable = (all(applies(p) for p in pieces) and norm.affine and norm.weight.dtype == torch.float32
               and (skip is None or skip.dtype == x.dtype))
    if fusable and norm.training and norm.track_running_stats and norm.momentum is not None and count > 1:
        y, mean, var = _BatchNormReLU.apply(members, skip, norm.weight, norm.bias, norm.eps, *pieces)
        with torch.no_grad():
            norm.running_mean.lerp_(mean, norm.momentum)
            norm.running_var.lerp_(var * (count / (count - 1)), norm.momentum)  # unbiased, as torch keeps it
            norm.num_batches_tracked += 1
        return y
    if fusable and not norm.training and norm.running_mean is not None and not torch.is_grad_enabled():
        return _normalize_relu(norm, pieces, members, skip)
    y = norm(concatenate(pieces, members))
    return F.relu(y, inplace=True) if skip is None else F.relu(y + skip)


def _normalize_relu(norm: nn.BatchNorm2d, pieces: list[torch.Tensor], members: int,
                    skip: torch.Tensor | None) -> torch.Tensor:
    """batch_norm_relu at inference: one pass, with the running statistics folded into a scale and offset."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    offset = norm.bias - norm.running_mean * scale
    pieces = [_channels_last(p) for p in pieces]
    skip = _channels_last(skip) if skip is not None else None
    batch, _, height, width = pieces[0].shape
    y = torch.empty((batch, scale.numel(), height, width), dtype=torch.bfloat16, memory_format=torch.channels_last)
    _library.normalize_relu(_pointers(pieces), len(pieces), members, _pointer(skip), y.data_ptr(),
                            batch * height * width, scale.numel(), scale.data_ptr(), offset.data_ptr())
    return y


def _pointers(tensors) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


class _BatchNormReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, members, skip, weight, bias, eps, *pieces):
        pieces = [_channels_last(p) for p in pieces]
        skip = _channels_last(skip) if skip is not None else None
        batch, _, height, width = pieces[0].shape
        channels = weight.numel()
        y = torch.empty((batch, channels, height, width), dtype=torch.bfloat16, memory_format=torch.channels_last)
        mean, var = torch.empty(channels), torch.empty(channels)
        _library.batch_norm_relu(_pointers(pieces), len(pieces), members, _pointer(skip), y.data_ptr(),
                                 batch * height * width, channels, weight.data_ptr(), bias.data_ptr(), eps,
                                 mean.data_ptr(), var.data_ptr())
        ctx.save_for_backward(skip, weight, bias, mean, var, *pieces)
        ctx.eps, ctx.members = eps, members
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy, _mean, _var):
        skip, weight, bias, mean, var, *pieces = ctx.saved_tensors
        dy = _channels_last(dy.to(torch.bfloat16))
        batch, channels, height, width = dy.shape
        dpieces = [torch.empty_like(p) for p in pieces]
        dskip = torch.empty_like(skip) if skip is not None and ctx.needs_input_grad[1] else None
        dweight, dbias = torch.empty(channels), torch.empty(channels)
        _library.batch_norm_relu_backward(dy.data_ptr(), _pointers(pieces), len(pieces), ctx.members,
                                          _pointer(skip), _pointers(dpieces), _pointer(dskip),
                                          batch * height * width, channels, weight.data_ptr(), bias.data_ptr(),
                                          mean.data_ptr(), var.data_ptr(), ctx.eps, dweight.data_ptr(),
                                          dbias.data_ptr())
        return None, dskip, dweight, dbias, None, *dpieces


def non_negative_max_pool_fork(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, the max over 3 time steps ('same' length) of x), x being never negative (a ReLU's outputs), where
    `applies(x)`; x's other consumers take the first. Values are compared as int16: non-negative floats order as
    their bits do. The gradient goes to each window's first maximum, as torch's max_pool2d sends it, and the
    backward adds the gradient that x's other consumers send back in the same pass, where autograd would add the
    two afterwards."""
    return _MaxPool.apply(x)


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        x = _channels_last(x)
        batch, channels, height, width = x.shape
        out = torch.empty_like(x)
        _library.max_pool3(x.data_ptr(), out.data_ptr(), batch * height, width, channels)
        ctx.save_for_backward(x)
        ctx.set_materialize_grads(False)  # x's gradient is None where x is not used: nothing to add
        return x, out

    @staticmethod
    def backward(ctx, add, grad):
        if grad is None:
            return add
        x, = ctx.saved_tensors
        grad = _channels_last(grad.to(torch.bfloat16))
        add = _channels_last(add.to(torch.bfloat16)) if add is not None else None
        batch, channels, height, width = x.shape
        dx = torch.empty_like(x)
        _library.max_pool3_backward(x.data_ptr(), grad.data_ptr(), _pointer(add), dx.data_ptr(), batch * height,
                                    width, channels)
        return dx
