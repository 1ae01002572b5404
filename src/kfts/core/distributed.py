"""Training over several processes and nodes: `torchrun --nproc-per-node N -m kfts train ...`, and Kubeflow
Trainer's TrainJob, which starts torchrun on every node (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ... in
the environment).

One process group for the whole job: gloo on the CPU, nccl on GPUs (one GPU per process, LOCAL_RANK's).
Collectives time out after KFTS_DIST_TIMEOUT_S seconds (default 600), so a rank that died takes the job
down with a message instead of leaving the others waiting forever; torchrun itself stops every local
process when one of them fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from kfts.core.errors import InputError


@dataclass(frozen=True)
class World:
    """This process's place in the job. One process (no torchrun): rank 0 of 1."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints metric lines and writes the artifact."""
        return self.rank == 0


def world() -> World:
    env = os.environ
    return World(
        rank=int(env.get("RANK", 0)),
        size=int(env.get("WORLD_SIZE", 1)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        local_size=int(env.get("LOCAL_WORLD_SIZE", 1)),
    )


def start(device: torch.device) -> World:
    """Join the job's process group (once per process) and return this process's World."""
    here = world()
    if here.size == 1 or dist.is_initialized():
        return here
    if device.type == "cuda":
        if torch.cuda.device_count() <= here.local_rank:
            raise InputError(
                f"rank {here.rank} needs GPU {here.local_rank} of this node, which has "
                f"{torch.cuda.device_count()}: start one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(here.local_rank)
    timeout = timedelta(seconds=float(os.environ.get("KFTS_DIST_TIMEOUT_S", 600)))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return here


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """A CUDA process uses its own GPU, LOCAL_RANK's."""
    return torch.device("cuda", world().local_rank) if device.type == "cuda" and world().size > 1 else device


def all_gather(value, group=None):
    """Every rank's `value` (any picklable object), in rank order, over `group` (the whole job by default);
    [value] in one process."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size(group)
    dist.all_gather_object(values, value, group=group)
    return values


def broadcast(value, source: int = 0):
    """Rank `source`'s `value`, on every rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def all_reduce_sum(values: list[float], group=None) -> list[float]:
    """Element-wise sums over the ranks of `group` (the whole job by default)."""
    if not dist.is_initialized():
        return values
    on_gpu = dist.get_backend(group) == "nccl"  # nccl reduces CUDA tensors only
    tensor = torch.tensor(values, dtype=torch.float64, device="cuda" if on_gpu else "cpu")
    dist.all_reduce(tensor, group=group)
    return tensor.tolist()
