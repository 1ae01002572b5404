"""Precise BatchNorm statistics: each BatchNorm's running mean and variance recomputed for the final weights.

Training keeps running averages (momentum 0.1) of every batch's statistics. They trail weights that are still
moving: on small data, where an epoch is one or two optimizer steps, the last steps move the weights faster than
the averages follow, and a model whose last epochs scored 0.88 on its training series predicted at chance with
them (issue 29). `recompute` sets every BatchNorm's statistics to the per-channel mean and variance of its input
over the whole training set, BatchNorm after BatchNorm in the order the forward pass reaches them, each one's
input computed with the statistics already set before it. In evaluation the network then normalizes exactly as
a training-mode forward pass of the whole training set as one batch does (the variance is that pass's biased
one), whatever the batch size, the order of the series or the layout the members were trained in.

The pass runs in fp32 whatever the training precision, through torch's own BatchNorm (the CPU kernels add-on's
bf16 kernels never see it); each chunk's mean and variance (torch's var_mean) are merged in float64. Reaching BatchNorm
k costs a forward pass up to it: about half the depth's worth of forward passes in all, once per training.
"""

from __future__ import annotations

import torch
from torch import nn

from kfts.algorithms.inception_time.network import InceptionNetworks
from kfts.core import distributed

CHUNK = 256  # series per forward pass


class _Reached(Exception):
    """Raised at the BatchNorm being measured: the rest of the forward pass is not needed."""


class Moments:
    """Per-channel count, mean and sum of squared deviations (float64), merged part by part (Chan et al.): the
    result does not depend on how the series were split into parts."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, torch.zeros(()), torch.zeros(())

    def add(self, x: torch.Tensor) -> None:
        """A batch of a BatchNorm2d's input, [batch, channels, height, time]."""
        var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)
        count = x.numel() // x.shape[1]
        self.merge(count, mean.double().cpu(), var.double().cpu() * count)

    def merge(self, count: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    def variance(self) -> torch.Tensor:
        return self.m2 / self.count


@torch.no_grad()
def recompute(
    network: InceptionNetworks, x: torch.Tensor, device: torch.device, *, group=None, share: int = 0, shares: int = 1
) -> None:
    """Set every BatchNorm of `network` to the statistics of its input over the series `x`
    ([n, channels, time], on any device). With `shares` > 1 the processes of `group` each take a shares-th
    of the series (this one the share-th) and combine their moments: every one of them ends with the
    statistics one process computes alone. Leaves the network in evaluation mode."""
    network.to(device).eval()
    chunks = [chunk for chunk in torch.split(x.tensor_split(shares)[share], CHUNK) if len(chunk)]
    for norm in network.batch_norms():
        moments = _input_moments(network, norm, chunks, device)
        if shares > 1:  # every process's parts, merged in rank order: the same statistics on every process
            parts, moments = distributed.all_gather((moments.count, moments.mean, moments.m2), group), Moments()
            for part in parts:
                moments.merge(*part)
        # the network's BatchNorms track running statistics (torch's are None where they do not)
        assert norm.running_mean is not None and norm.running_var is not None
        norm.running_mean.copy_(moments.mean)
        norm.running_var.copy_(moments.variance())


def _input_moments(network: nn.Module, norm: nn.BatchNorm2d, chunks, device: torch.device) -> Moments:
    """The moments of `norm`'s input over the chunks of series, each run forward only as far as `norm`."""
    moments = Moments()

    def measure(module, inputs):
        moments.add(inputs[0])
        raise _Reached

    hook = norm.register_forward_pre_hook(measure)
    try:
        for chunk in chunks:
            try:
                network(chunk.to(device, torch.float32))
            except _Reached:
                pass
    finally:
        hook.remove()
    return moments
