"""kfts's InceptionTime layers on the add-on's operators: what kfts's network hook loads (the entry point
"inception-time" in the group "kfts.network_ops"; kfts/algorithms/inception_time/network.py says the contract).

In bf16 on the CPU, BatchNorm+ReLU (with a shortcut's addition) and the max-pool of a ReLU's outputs run as
kernels.c's single passes (kfts_cpu_kernels.ops); everything else (fp32, fp16, GPUs, a BatchNorm without float32
weights) goes to the layers kfts hands in, torch's own ops.
"""

from __future__ import annotations

import torch
from torch import nn

from kfts_cpu_kernels import ops


def applies(x: torch.Tensor) -> bool:
    """Whether the kernels run on x: bf16 on a CPU."""
    return x.device.type == "cpu" and x.dtype == torch.bfloat16


class Layers:
    """The layers of kfts's network hook: the fused kernels where they apply, `fallback` (kfts's own) elsewhere."""

    def __init__(self, fallback):
        self.fallback = fallback

    def max_pool(self, x: torch.Tensor, *, non_negative: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, the max over 3 time steps of x): for a ReLU's outputs in bf16 one pass each way, whose backward
        adds the gradient that x's other consumers send back in the same pass, where autograd would add the two
        afterwards."""
        if non_negative and applies(x):
            return _MaxPoolFork.apply(x)
        return self.fallback.max_pool(x, non_negative=non_negative)

    def batch_norm_relu(
        self, norm: nn.BatchNorm2d, pieces: list[torch.Tensor], members: int = 1, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """relu(norm(x)), or relu(norm(x) + skip), x being the member-major concatenation of the pieces, which the
        kernels read where they are: in training with the batch's statistics, updating norm's running statistics
        as norm would; in evaluation without gradients, with the running statistics."""
        x = pieces[0]
        count = x.numel() // x.shape[1]
        # float32 affine parameters, as autocast leaves them; anything else runs as torch's ops, which also raise
        # torch's errors (one value per channel cannot be normalized)
        fusable = (
            all(applies(p) for p in pieces)
            and norm.affine
            and norm.weight.dtype == torch.float32
            and (skip is None or applies(skip))
        )
        if fusable and norm.training and norm.track_running_stats and norm.momentum is not None and count > 1:
            y, mean, var = ops.batch_norm_relu(pieces, members, skip, norm.weight, norm.bias, norm.eps)
            with torch.no_grad():
                norm.running_mean.lerp_(mean, norm.momentum)
                norm.running_var.lerp_(var * (count / (count - 1)), norm.momentum)  # unbiased, as torch keeps it
                norm.num_batches_tracked += 1
            return y
        if fusable and not norm.training and norm.running_mean is not None and not torch.is_grad_enabled():
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            return ops.normalize_relu(pieces, members, skip, scale, norm.bias - norm.running_mean * scale)
        return self.fallback.batch_norm_relu(norm, pieces, members, skip)


class _MaxPoolFork(torch.autograd.Function):
    """(x, max_pool3(x)), x passed on to its other consumers; the backward is one max_pool3_backward that adds
    their gradient (None where x has no other consumer that needs one)."""

    @staticmethod
    def forward(ctx, x):
        x = x.contiguous(memory_format=torch.channels_last)
        ctx.save_for_backward(x)
        ctx.set_materialize_grads(False)
        return x, ops.max_pool3(x)

    @staticmethod
    def backward(ctx, add, grad):
        if grad is None:
            return add
        (x,) = ctx.saved_tensors
        return ops.max_pool3_backward(x, grad.to(torch.bfloat16), add.to(torch.bfloat16) if add is not None else None)
