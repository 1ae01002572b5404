"""The training loop (kfts.core.training_loop) every estimator trains through: what it does the same for all."""

from __future__ import annotations

import pytest
import torch

from kfts.core.errors import InputError
from kfts.core.training import DEVICE_FAULTS
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


class _Interrupted(Exception):
    pass


class _Dropout(Task):
    """A linear layer behind dropout: its weights after training depend on every mask dropout drew."""

    epochs = 3

    def __init__(self, kill_in_epoch: int = 0):
        self.kill_in_epoch = kill_in_epoch
        self.x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))

    def new_network(self):
        return torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))

    def optimizer(self, network):
        return torch.optim.SGD(network.parameters(), lr=0.1)

    def batches(self, generators, share, shares):
        for rows in torch.randperm(len(self.x), generator=generators[0]).split(8):
            yield self.x[rows], self.x[rows].sum(dim=1, keepdim=True)

    def loss(self, outputs, targets):
        return torch.nn.functional.mse_loss(outputs.float(), targets)

    def validate(self, network):
        # after the epoch's steps, before its checkpoint: as if the process were killed in the middle of the epoch
        self.kill_in_epoch -= 1
        if self.kill_in_epoch == 0:
            raise _Interrupted
        return {}


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_a_resumed_run_draws_the_dropout_masks_of_one_never_interrupted(tmp_path, device):
    # the random numbers dropout draws (torch's generator on the CPU, CUDA's on a GPU) are saved with every
    # checkpoint; a resumed run that drew others would end with other weights
    whole = Trainer(device, seed=0).train(_Dropout(), fingerprint={})
    with pytest.raises(_Interrupted):
        Trainer(device, seed=0, checkpoint_dir=str(tmp_path)).train(_Dropout(kill_in_epoch=2), fingerprint={})
    resumed = Trainer(device, seed=0, checkpoint_dir=str(tmp_path)).train(_Dropout(), fingerprint={})
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    for name, weights in whole.state.items():
        assert torch.equal(resumed.state[name], weights), name


class _FaultOnRestore(_Dropout):
    """Whose optimizer meets `fault` while a resumed run restores its state."""

    def __init__(self, fault: Exception):
        super().__init__()
        self.fault = fault

    def optimizer(self, network):
        optimizer = super().optimizer(network)

        def load_state_dict(state):
            raise self.fault

        optimizer.load_state_dict = load_state_dict
        return optimizer


def test_a_device_fault_while_resuming_is_not_blamed_on_the_checkpoint(tmp_path):
    # what torch refuses in a checkpoint's insides is the file's damage ("delete it to start over"), but a GPU
    # out of memory or faulting there is not: deleting the checkpoint would throw away the run for nothing
    with pytest.raises(_Interrupted):
        Trainer("cpu", seed=0, checkpoint_dir=str(tmp_path)).train(_Dropout(kill_in_epoch=2), fingerprint={})
    damaged = RuntimeError("size mismatch for weight")
    with pytest.raises(InputError, match="is not a complete kfts checkpoint .RuntimeError: size mismatch"):
        Trainer("cpu", seed=0, checkpoint_dir=str(tmp_path)).train(_FaultOnRestore(damaged), fingerprint={})
    faults = [torch.cuda.OutOfMemoryError("CUDA out of memory"), *[e("CUDA error") for e in DEVICE_FAULTS[1:]]]
    for fault in faults:
        with pytest.raises(type(fault)) as raised:
            Trainer("cpu", seed=0, checkpoint_dir=str(tmp_path)).train(_FaultOnRestore(fault), fingerprint={})
        assert raised.value is fault


class _Accuracy(_Dropout):
    """Whose figures add one of their own and leave the loss to the loop."""

    def figures(self, loss, outputs, targets):
        return {"close": ((outputs - targets).abs() < 1).sum().item()}


def test_a_task_that_adds_figures_still_reports_and_watches_its_loss():
    # a plugin's Task adds figures without repeating the loss, which the loop needs (divergence, plateau)
    trained = Trainer("cpu", seed=0).train(_Accuracy(), fingerprint={})
    assert [sorted(row) for row in trained.history] == [["epoch", "train_close", "train_loss"]] * 3
    assert all(row["train_loss"] > 0 and 0 <= row["train_close"] <= 1 for row in trained.history)
