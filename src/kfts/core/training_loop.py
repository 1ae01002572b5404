"""The training loop every estimator's fit() runs its network through: the built-in algorithms and plugins alike
(tests/toy_algorithm/mean_detector is the shortest example).

An estimator describes its model in a `Task`: how a network is built, one epoch's batches, how a batch's loss is
computed, the validation figures, and what happens to the weights it keeps. A `Trainer` does the rest, the same
way for every algorithm:

- device and precision: the device `device` names (kfts.core.training.resolve_device), under torchrun each process on
  its own GPU; forward passes under autocast at the task's dtype, the loss outside it, scaled against
  gradient underflow wherever that dtype is fp16 (torch's AMP recipe);
- the world (kfts.core.distributed): a network trained by several processes is wrapped in DistributedDataParallel,
  each process taking its share of every batch, and the epoch's figures are summed over them; rank 0 prints;
- seeds: one for the whole job (rank 0 draws it when none is given). Ensemble member m starts from the weights
  seeded `seed + m` and draws its batches from a generator seeded `seed + m`, whichever network, process or
  pipeline task it is trained in, so that every layout trains the same members;
- checkpoints (kfts.core.training.Checkpoints): the state after every epoch, so that a killed run resumes at the next
  one and ends with the weights of a run never interrupted (on a GPU, as far as cuDNN is deterministic: README.md
  "Training InceptionTime"); then the finished result, which a run started again takes as it is;
- metric lines: one fixed-point `name=value` line per epoch, the progress bar, and the final figures (`report`);
- the learning rate (constant, or the paper's ReduceLROnPlateau on the training loss), early stopping on the
  validation loss, and which epoch's weights are kept.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import torch
from torch import nn

from kfts.core import distributed
from kfts.core.errors import InputError
from kfts.core.training import (
    CHECKPOINT,
    Checkpoints,
    MetricLog,
    autocast,
    metric_line,
    progress,
    resolve_device,
    seed_everything,
)


class Task:
    """What an estimator's fit() tells the Trainer about its model. Subclasses implement the methods that raise
    NotImplementedError and set the attributes their training differs in."""

    name = "model"  # the progress bar's label
    epochs = 1
    dtype: torch.dtype | None = None  # the autocast dtype of the training forward passes; None: fp32
    schedule = "constant"  # or "plateau": ReduceLROnPlateau on the training loss
    early_stopping = 0  # epochs without a lower validation loss before training stops; 0: off

    def new_network(self) -> nn.Module:
        """One member's network, its weights drawn from torch's random numbers (which the Trainer has seeded)."""
        raise NotImplementedError

    def stack(self, networks: list[nn.Module]) -> nn.Module:
        """One network of several members, to train together: asked only of tasks trained in such groups."""
        raise NotImplementedError

    def start(self, members: tuple[int, ...]) -> dict | None:
        """The state_dict `members` start from when fine-tuning a previous model, or a part of it (the rest keeps
        its seeded weights: a replaced classifier head); None: their seeded weights."""
        return None

    def optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def batches(self, generators: list[torch.Generator], share: int, shares: int) -> Iterable[tuple]:
        """One epoch of (inputs, targets) batches on the CPU, in the order drawn from `generators` (one per
        member). Trained by several processes, this one takes the `share`-th of `shares` parts of each batch."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """What the optimizer minimises, from the network's outputs for one batch."""
        raise NotImplementedError

    def figures(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """The batch's sums of the epoch's training figures; each is reported as `train_NAME`, divided by the
        number of targets of the epoch. Called after the optimizer step. Without a "loss", the loop sums
        loss * len(targets): the loss it watches for divergence and the plateau schedule."""
        return {}

    def validate(self, network: nn.Module) -> dict[str, float]:
        """The epoch's validation figures (`valid_loss`...), or none."""
        return {}

    def keep(self, network: nn.Module, group: Group, share: int) -> None:
        """Called with the weights training keeps, before they are saved (InceptionTime recomputes its
        BatchNorm statistics for them, `share` of the training series on each of the group's processes)."""


@dataclass(frozen=True)
class Group:
    """Ensemble members trained together as one network, and the processes that train it: data-parallel when
    several, over `process_group` (None: all of the job's). `label`: the member number its history rows and log
    lines carry, where the ensemble is trained in several groups."""

    members: tuple[int, ...] = (0,)
    ranks: tuple[int, ...] = (0,)
    process_group: object = None
    label: int | None = None


class _Best(TypedDict):
    """The epoch whose weights training keeps so far, and the loss it is kept for."""

    loss: float
    state: dict | None  # its state_dict; None: none kept yet
    epoch: int


@dataclass
class Trained:
    state: dict  # the kept weights (a state_dict on the CPU)
    history: list[dict]  # one row of figures per epoch
    kept: int  # the epoch whose weights are kept


# what a checkpoint must hold, by key, to resume from it: after the last epoch ("done": the Trained), and after
# any other (the other parts are optional: checkpoints from before this loop lack some)
FINISHED = {"network": dict, "history": list, "kept": int}
RESUMED = {"epoch": int, "history": list}
# a _Best, where a checkpoint has one
BEST: dict[str, type | tuple[type, ...]] = {"loss": float, "state": (dict, type(None)), "epoch": int}


class Trainer:
    """Runs Tasks on this process's device, in its place in the job (`world`), with the job's `seed`."""

    def __init__(
        self, device: str = "auto", seed: int | None = None, *, checkpoint_dir=None, log: MetricLog | None = None
    ):
        resolved = resolve_device(device)
        self.world = distributed.start(resolved)
        self.device = distributed.device_for(resolved)
        self.log = log or MetricLog(quiet=not self.world.main)
        # without a seed, rank 0 draws one for every process: they must agree on it
        self.seed = distributed.broadcast(seed if seed is not None else int(time.time()))
        self.checkpoint_dir = checkpoint_dir

    def say(self, line: str) -> None:
        """A log line, printed once for the job (by rank 0)."""
        if self.world.main:
            print(line, flush=True)

    def report(self, metrics: dict, warnings: Sequence[str] = ()) -> None:
        """The final figures' metric line, the last one Katib reads; why the fit failed, if it did, on stderr."""
        if self.world.main:
            print(metric_line(metrics), flush=True)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr, flush=True)

    def train_groups(
        self,
        task: Task,
        plan: list[tuple[list[int], list[int]]],
        *,
        fingerprint: dict,
        data: Sequence[torch.Tensor | None] = (),
    ) -> list[Trained]:
        """Train an ensemble in groups shared out over the job's processes: `plan` lists (the members trained
        together, the ranks that train them). Every process ends with every group's result, in plan order."""
        # every process makes every subgroup, in the same order, as torch.distributed requires
        subgroups = [torch.distributed.new_group(ranks) if len(ranks) > 1 else None for _, ranks in plan]
        trained = {}
        for g, ((members, ranks), subgroup) in enumerate(zip(plan, subgroups)):
            if self.world.rank not in ranks:
                continue
            group = Group(tuple(members), tuple(ranks), subgroup, label=members[0] + 1 if len(plan) > 1 else None)
            result = self.train(
                task,
                group,
                fingerprint={**fingerprint, "members": members},
                data=data,
                checkpoint=f"members-{members[0]}-{members[-1]}.pt",
            )
            if self.world.rank == ranks[0]:
                trained[g] = result
        for results in distributed.all_gather(trained):
            trained.update(results)
        return [trained[g] for g in range(len(plan))]

    def train(
        self,
        task: Task,
        group: Group | None = None,
        *,
        fingerprint: dict,
        data: Sequence[torch.Tensor | None] = (),
        checkpoint: str = CHECKPOINT,
    ) -> Trained:
        """Train `group`'s network (None: one network, data-parallel over every process of the job) for
        task.epochs epochs, resuming from the checkpoint `checkpoint` in checkpoint_dir when one of this run is
        there: of this `fingerprint` (hyperparameters, seed), `data` (the tensors it trains and validates on) and
        weights the task starts from."""
        group = group or Group(ranks=tuple(range(self.world.size)))
        share = group.ranks.index(self.world.rank)
        start = task.start(group.members)
        checkpoints = Checkpoints(
            self.checkpoint_dir,
            fingerprint,
            tensors=[*data, *(start.values() if start is not None else [None])],
            name=checkpoint,
            writer=self.world.rank == group.ranks[0],
        )
        state = checkpoints.load() or {}
        if state.get("done"):
            checkpoints.check(state, FINISHED)
            return Trained(state["network"], state["history"], state["kept"])
        if state:
            checkpoints.check(state, RESUMED)
            if "best" in state:
                checkpoints.check(state, {"best": dict})
                checkpoints.check(state["best"], BEST, within="best.")
        network = self._initial_network(task, group.members)
        if start is not None:
            network.load_state_dict({**network.state_dict(), **start})
        network.to(self.device)
        optimizer = task.optimizer(network)
        scaler = torch.amp.GradScaler(self.device.type, enabled=task.dtype == torch.float16)
        # what a checkpoint saves of each, by name
        parts: dict[str, Any] = {
            "network": network,
            "optimizer": optimizer,
            "grad_scaler": scaler,
            "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=50, min_lr=1e-4),
        }
        generators = [torch.Generator().manual_seed(self.seed + m) for m in group.members]  # each member's batches
        # the weights kept at the end: those of the lowest validation loss under early stopping, of the lowest
        # training loss under the plateau schedule, else the last epoch's
        watched = "valid_loss" if task.early_stopping else "train_loss" if task.schedule == "plateau" else None
        best: _Best = {"loss": math.inf, "state": None, "epoch": 0}
        history: list[dict] = []
        first_epoch = 1
        if state:
            with checkpoints.restoring():
                for key, part in parts.items():
                    if state.get(key):  # checkpoints from before this loop lack some (an unused grad scaler has none)
                        part.load_state_dict(state[key])
                _restore_random_numbers(state, generators, self.device)
                if state.get("best", {}).get("state") is not None:  # loaded at the end: refuse it now, not then
                    copy.deepcopy(network).load_state_dict(state["best"]["state"])
            best, history, first_epoch = state.get("best", best), state["history"], state["epoch"] + 1
        model = self._parallel(network, group)
        name = f"member {group.label}" if group.label else task.name
        for epoch in progress(range(first_epoch, task.epochs + 1), total=task.epochs - first_epoch + 1, desc=name):
            if task.early_stopping and epoch - 1 - best["epoch"] >= task.early_stopping:
                print(
                    f"early stopping: {name if group.label else f'the {name}'} stopped after epoch {epoch - 1}, "
                    f"keeping epoch {best['epoch']}'s weights (valid_loss={best['loss']:.6f})",
                    flush=True,
                )
                break
            metrics = {"epoch": epoch, **self._epoch(task, model, optimizer, scaler, generators, group, share)}
            if not math.isfinite(metrics["train_loss"]):  # the weights are lost: nothing worth keeping from here
                member = f" of member {group.label}" if group.label else ""
                raise InputError(
                    f"training diverged: train_loss{member} was {metrics['train_loss']} in epoch {epoch}; "
                    "try a lower --lr"
                )
            metrics.update(task.validate(network))
            if task.schedule == "plateau":
                parts["plateau"].step(metrics["train_loss"])
            if watched and metrics[watched] < best["loss"]:
                best = {"loss": metrics[watched], "state": copy.deepcopy(network.state_dict()), "epoch": epoch}
            history.append({"member": group.label, **metrics} if group.label else metrics)
            self.log.log(history[-1])
            checkpoints.save(
                {
                    "epoch": epoch,
                    **{key: part.state_dict() for key, part in parts.items()},
                    "best": best,
                    "history": history,
                    **_random_numbers(generators, self.device),
                }
            )
        kept = best["epoch"] if best["state"] is not None else history[-1]["epoch"]
        if best["state"] is not None:
            network.load_state_dict(best["state"])
        task.keep(network, group, share)
        final = {k: v.cpu() for k, v in network.state_dict().items()}
        checkpoints.save({"done": True, "network": final, "history": history, "kept": kept})
        return Trained(final, history, kept)

    def _initial_network(self, task: Task, members: tuple[int, ...]) -> nn.Module:
        networks = []
        for m in members:
            seed_everything(self.seed + m)  # member m's initial weights, whatever group it is trained in
            networks.append(task.new_network())
        return networks[0] if len(networks) == 1 else task.stack(networks)

    def _parallel(self, network: nn.Module, group: Group) -> nn.Module:
        if len(group.ranks) == 1:
            return network
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            network,
            process_group=group.process_group,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
        )

    def _epoch(self, task, model, optimizer, scaler, generators, group, share) -> dict[str, float]:
        """One epoch's training: the `train_*` figures, over every process of the group."""
        model.train()
        count: float = 0  # a number of targets; summed over processes as a float
        sums: dict[str, float] = {}
        for inputs, targets in task.batches(generators, share, len(group.ranks)):
            inputs = inputs.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            loss, outputs = step(task, model, optimizer, inputs, targets, scaler)
            figures = task.figures(loss, outputs, targets)
            if "loss" not in figures:
                figures["loss"] = loss.item() * len(targets)
            for figure, value in figures.items():
                sums[figure] = sums.get(figure, 0.0) + value
            count += len(targets)
        if len(group.ranks) > 1:
            count, *values = distributed.all_reduce_sum([count, *sums.values()], group.process_group)
            sums = dict(zip(sums, values))
        return {f"train_{figure}": value / count for figure, value in sums.items()}


def _random_numbers(generators: list[torch.Generator], device: torch.device) -> dict:
    """Where the random numbers training draws stand: each member's batch order, and torch's own generator
    (dropout), on the CPU and on a GPU. "rng" keeps the first member's too, where kfts before this loop read it
    (LSTM-AD's one)."""
    numbers = {
        "generators": [generator.get_state() for generator in generators],
        "rng": {"torch": torch.get_rng_state(), "generator": generators[0].get_state()},
    }
    if device.type == "cuda":
        numbers["cuda_rng"] = torch.cuda.get_rng_state(device)
    return numbers


def _restore_random_numbers(state: dict, generators: list[torch.Generator], device: torch.device) -> None:
    # LSTM-AD's checkpoints from before this loop have "rng" only, InceptionTime's "generators" only
    for generator, saved in zip(generators, state.get("generators") or [state["rng"]["generator"]]):
        generator.set_state(saved)
    if "rng" in state:
        torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and "cuda_rng" in state:  # a run checkpointed on a CPU may resume on a GPU
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def step(
    task: Task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on one batch: (the loss, the outputs), detached. Also what estimators time when they
    choose how to train (threads, ensemble layout)."""
    scaler = scaler or torch.amp.GradScaler(inputs.device.type, enabled=False)
    with autocast(inputs.device, task.dtype):
        outputs = model(inputs)
    loss = task.loss(outputs, targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), outputs.detach()
