"""The training loop (kfts.core.training_loop) every estimator trains through: what it does the same for all."""

from __future__ import annotations

import torch

from kfts.core.training_loop import Task, Trainer


class _SmallGradients(Task):
    """One linear layer whose loss is so small that its fp16 outputs' gradients underflow to zero unless the loss
    is scaled: the case deep networks meet in their early layers."""

    def __init__(self, dtype: torch.dtype | None):
        self.dtype = dtype
        self.x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))

    def new_network(self):
        return torch.nn.Linear(8, 4)

    def optimizer(self, network):
        return torch.optim.SGD(network.parameters(), lr=1.0)

    def batches(self, generators, share, shares):
        yield self.x, torch.zeros(len(self.x))

    def loss(self, outputs, targets):
        return outputs.float().sum() * 1e-9


def test_fp16_training_scales_the_loss_against_gradient_underflow():
    # torch's AMP recipe: fp16 autocast goes with a GradScaler, on any device (CPU autocast takes fp16 too)
    initial = Trainer("cpu", seed=0)._initial_network(_SmallGradients(None), (0,)).state_dict()
    for dtype in (None, torch.float16):
        trained = Trainer("cpu", seed=0).train(_SmallGradients(dtype), fingerprint={})
        moved = (trained.state["weight"] - initial["weight"]).abs().max().item()
        assert moved > 0, f"{dtype}: the weights did not move: the gradients underflowed"
