"""InceptionTime (Ismail Fawaz et al., DMKD 2020): an ensemble of Inception networks for classification.

One network of the paper:

    input -> [Inception module] x depth -> global average pooling -> linear -> softmax
             with a residual shortcut (1x1 conv + BatchNorm, added, then ReLU) around every third module

    Inception module: bottleneck 1x1 conv (only if the input has more than one channel)
                      -> three convs, kernel 10, 20, 40 ('same' padding, no bias)
                      plus max-pool(3) -> 1x1 conv on the module's input
                      -> concatenate the four -> BatchNorm -> ReLU

`InceptionNetworks` holds `members` such networks side by side as the groups of grouped convolutions: member
g owns channel block g of every layer, so the members never mix and differ only in their initial (Glorot
uniform) weights. members=1 is exactly one network of the paper. Training the whole ensemble as one grouped
network, or member after member, is then a choice of speed, not of model: `split_members` and
`merge_members` move between the two without changing a single weight.

Series are carried as [batch, channels, 1, time] in channels-last memory and convolved with 1 x k kernels:
the same arithmetic as Conv1d, but it takes oneDNN's fast path on CPUs, which Conv1d's long kernels miss
(benchmarks/REPORT.md, "Training speed (InceptionTime)").

Every module's max-pool and BatchNorm+ReLU run through LAYERS, the one place where an installed add-on takes
over (see TorchLayers); without one they are torch's own ops.
"""

from __future__ import annotations

import math
import warnings
from importlib.metadata import entry_points
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

KERNEL_SIZES = (10, 20, 40)  # even: see SameConv
BOTTLENECK = 32
MAX_POOL: dict[str, Any] = dict(kernel_size=(1, 3), stride=1, padding=(0, 1))  # over 3 time steps, 'same' length


def _conv(members: int, in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """`members` independent convolutions as one grouped conv (channels are member-major), 'same' padded."""
    conv = SameConv(members * in_channels, members * out_channels, kernel_size, groups=members)
    _glorot_uniform(conv.weight, fan_in=in_channels * kernel_size, fan_out=out_channels * kernel_size)
    return conv


class SameConv(nn.Conv2d):
    """A 1 x k convolution with Keras's 'same' padding: output step t sees input steps t - (k-1)//2 ... t + k//2.

    torch pads symmetrically, which only fits odd kernels. An even kernel runs as an odd one with a zero tap in
    front: the same sums, one tap more. Cheaper than the alternatives, which copy the input (torch's
    padding="same") or slice one step off a longer output (its gradient is a zero-filled copy)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int):
        super().__init__(
            in_channels, out_channels, (1, kernel_size), padding=(0, kernel_size // 2), bias=False, groups=groups
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.weight.shape[-1] % 2 else F.pad(self.weight, (1, 0))
        return F.conv2d(x, weight, None, padding=self.padding, groups=self.groups)


def _glorot_uniform(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    # per member fans: torch's xavier_uniform_ would count all groups' output channels as one fan
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(weight, -bound, bound)


class InceptionModule(nn.Module):
    def __init__(self, members: int, in_channels: int, filters: int, *, relu_input: bool):
        """relu_input: the input is a ReLU's output (every module but the first), so never negative."""
        super().__init__()
        self.members, self.relu_input = members, relu_input
        self.bottleneck = _conv(members, in_channels, BOTTLENECK, 1) if in_channels > 1 else None
        branch_in = BOTTLENECK if in_channels > 1 else in_channels
        self.convs = nn.ModuleList(_conv(members, branch_in, filters, k) for k in KERNEL_SIZES)
        self.pool_conv = _conv(members, in_channels, filters, 1)
        self.norm = nn.BatchNorm2d(members * 4 * filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pooled = LAYERS.max_pool(x, non_negative=self.relu_input)
        z = self.bottleneck(x) if self.bottleneck is not None else x
        branches = [conv(z) for conv in self.convs] + [self.pool_conv(pooled)]
        return LAYERS.batch_norm_relu(self.norm, branches, self.members)


class Shortcut(nn.Module):
    def __init__(self, members: int, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = _conv(members, in_channels, out_channels, 1)
        self.norm = nn.BatchNorm2d(members * out_channels)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return LAYERS.batch_norm_relu(self.norm, [self.conv(residual)], skip=x)


class InceptionNetworks(nn.Module):
    """`members` InceptionTime networks evaluated side by side: input [batch, channels, length] ->
    logits [batch, members, classes]."""

    def __init__(self, in_channels: int, n_classes: int, *, members: int = 5, filters: int = 32, depth: int = 6):
        super().__init__()
        self.members, self.in_channels, self.n_classes = members, in_channels, n_classes
        width = 4 * filters
        self.modules_ = nn.ModuleList(
            InceptionModule(members, in_channels if d == 0 else width, filters, relu_input=d > 0) for d in range(depth)
        )
        # a shortcut around every third module: from the input to module 3, from module 3 to module 6, ...
        self.shortcuts = nn.ModuleDict(
            {str(d): Shortcut(members, in_channels if d == 2 else width, width) for d in range(2, depth, 3)}
        )
        self.head = nn.Conv2d(members * width, members * n_classes, 1, groups=members)  # one linear per member
        _glorot_uniform(self.head.weight, fan_in=width, fan_out=n_classes)
        nn.init.zeros_(cast(torch.Tensor, self.head.bias))  # the head has a bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, channels, time], the series every member sees (prediction), or [batch, members, channels,
        time], each member's own (training: every member takes its own batches, as it would trained alone)."""
        if x.dim() == 3:
            x = x.unsqueeze(1).expand(-1, self.members, -1, -1)
        # -> [batch, members * channels, 1, time], member-major channels
        x = x.flatten(1, 2).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        residual = x
        for d, module in enumerate(self.modules_):
            x = module(x)
            if str(d) in self.shortcuts:
                x = self.shortcuts[str(d)](x, residual)
                residual = x
        pooled = GlobalAveragePool.apply(x)
        return self.head(pooled).view(x.shape[0], self.members, self.n_classes)

    def batch_norms(self) -> list[nn.BatchNorm2d]:
        """Every BatchNorm, in the order forward() reaches them."""
        norms = []
        for d, module in enumerate(self.modules_):
            norms.append(module.norm)
            if str(d) in self.shortcuts:
                norms.append(self.shortcuts[str(d)].norm)
        return cast(list[nn.BatchNorm2d], norms)


# -- the hook: the layers an installed add-on may run its own way ---------------------------------------------

NETWORK_OPS = "kfts.network_ops"  # the entry point group; the entry point's name is the algorithm's id


class TorchLayers:
    """The max-pool and BatchNorm+ReLU of every module, as torch's ops: the contract of an add-on's layers.

    An installed distribution with an entry point "inception-time" in the group "kfts.network_ops" takes over:
    its value is a class whose instances, built with the layers below them (these, or another add-on's), have the
    same two methods with the same results (to their precision) and may run faster where they apply, handing
    everything else to those below. addons/kfts-cpu-kernels is one: fused bf16 CPU kernels for both."""

    def max_pool(self, x: torch.Tensor, *, non_negative: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, the max over 3 time steps of x, 'same' length): x is handed on to its other consumer (the
        bottleneck), so that an add-on may add that consumer's gradient to the max-pool's in its own backward.
        non_negative: x is a ReLU's output."""
        return x, F.max_pool2d(x, **MAX_POOL)

    def batch_norm_relu(
        self, norm: nn.BatchNorm2d, pieces: list[torch.Tensor], members: int = 1, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """relu(norm(x)), or relu(norm(x) + skip) (a residual connection), x being `concatenate(pieces,
        members)` (an Inception module's branches). An add-on updates norm's running statistics as norm does."""
        y = norm(concatenate(pieces, members))
        return F.relu(y, inplace=True) if skip is None else F.relu(y + skip)


def installed_layers() -> TorchLayers:
    """torch's layers, each installed add-on's (group NETWORK_OPS, name inception-time) built on top; an add-on
    that cannot load (ImportError, OSError: a shared library missing) is left out, with a warning."""
    layers = TorchLayers()
    for entry in entry_points(group=NETWORK_OPS, name="inception-time"):
        try:
            layers = entry.load()(layers)
        except (ImportError, OSError) as error:  # an add-on only adds speed: without it the network is the same
            warnings.warn(
                f"kfts: the network runs on torch's layers, the add-on {entry.value} cannot load: {error}", stacklevel=2
            )
    return layers


LAYERS = installed_layers()


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


class GlobalAveragePool(torch.autograd.Function):
    """The mean over time of [batch, channels, 1, time] -> [batch, channels, 1, 1], as avg_pool2d over the whole
    length (not mean, whose bf16 CPU kernel first copies the whole input to fp32), with a backward that writes
    the gradient once (the same values as avg_pool2d's, which zero-fills the gradient, then adds to it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return F.avg_pool2d(x, (1, x.shape[-1]))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return (grad / ctx.shape[-1]).expand(ctx.shape).contiguous(memory_format=torch.channels_last)


def ensemble_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The ensemble's prediction: each member's softmax, averaged over members ([batch, members, classes])."""
    return F.softmax(logits.float(), dim=-1).mean(dim=1)


def split_members(state: dict[str, torch.Tensor], members: int) -> list[dict[str, torch.Tensor]]:
    """One state dict per member from a `members`-wide network's state dict (every tensor is member-major)."""
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(members)]
    for name, tensor in state.items():
        chunks = tensor.chunk(members, dim=0) if tensor.dim() else [tensor] * members
        for part, chunk in zip(parts, chunks):
            part[name] = chunk.clone()
    return parts


def merge_members(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The state dict of one network holding all the given members, in order (inverse of split_members)."""
    return {
        name: torch.cat([s[name] for s in states]) if tensor.dim() else tensor.clone()
        for name, tensor in states[0].items()
    }
