"""What every kfts training loop shares: device and precision choice, input scaling, metric lines, checkpoints,
seeding.

Metric lines (docs/CLI.md "train"): fixed-point ``name=value`` pairs on stdout, one per epoch,
which Katib's default stdout collector and a person can both read. A person at a terminal also gets a
progress bar on stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import random
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kfts.core.errors import InputError

CHECKPOINT = "checkpoint.pt"

# Standardized inputs are saturated at this many standard deviations from the training data's mean: further out
# (a 1e38 reading) the networks' float32 arithmetic overflowed, into NaN probabilities and steps left unscored.
# A value that far from everything the model was trained on says the same to it at any distance.
MAX_STANDARD_SCORE = 1e6


# -- device and precision -------------------------------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA when present, else the CPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is visible")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def use_cpu_share() -> None:
    """Give torch as many threads as this process may really use (cpu_count), shared with the other processes
    of its node under torchrun, and let it reuse freed memory (reuse_freed_memory). Called once by each entry
    point (the CLI, the components, the predictor); torch's own default counts every core of the node, which a
    pod's CPU limit may not grant."""
    torch.set_num_threads(max(1, cpu_count() // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    reuse_freed_memory()


def reuse_freed_memory(threshold: int = 1 << 30) -> bool:
    """Keep glibc from handing large freed blocks back to the kernel; True where the setting took.

    Training steps and inference batches allocate and free the same large buffers again and again (an
    InceptionTime ensemble's activations are 16-40 MB). glibc serves blocks above its mmap threshold (at most
    32 MB by default) with fresh mmaps and unmaps them on free, so each use page-faults its memory in again:
    440,000 faults per epoch on the seed sample. With the threshold raised such blocks come from the heap and
    are reused: the validation pass over 150 series ran a third faster (benchmarks/REPORT.md "Where an epoch
    goes"). The process's peak memory is unchanged, it is only kept. No-op where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h
    # blocks up to t come from the heap, which keeps up to t free at its top. mallopt takes a C int, and
    # ctypes wraps larger numbers silently: t stays below 2 GiB. glibc versions that cap the mmap threshold at
    # 32 MB refuse more: then 32 MB
    return any(mallopt(m_mmap_threshold, t) and mallopt(m_trim_threshold, t) for t in (threshold, 32 << 20))


def cpu_count(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may really use: its CPU affinity, capped by a cgroup CPU quota.

    In a Kubernetes pod with `limits.cpu: 2` on a 64-core node the affinity still lists 64 cores; 64 OpenMP
    threads sharing 2 cores' worth of quota spin and wait on each other and run many times slower.
    """
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]  # cgroup v2: "max 100000" or "200000 100000"
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def cpu_supports_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX): where bf16 autocast makes convolutions faster on a CPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` (auto|fp32|bf16|fp16) on `device`; None means plain fp32.

    auto: bf16 on GPUs that support it and on CPUs with native bf16, fp16 on older GPUs, else fp32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise InputError(f"--precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


SEEDS = 2**32  # a seed is one of 0 .. SEEDS - 1, which numpy's generator takes as it is


def seed_everything(seed: int | None) -> None:
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def standardize(values: np.ndarray, mean, std) -> np.ndarray:
    """(values - mean) / std in float32 (mean, std: scalars or one per column), saturated at
    +-MAX_STANDARD_SCORE."""
    mean, std = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    with np.errstate(over="ignore"):  # an overflow is an infinity, which the clip saturates
        scaled = (np.asarray(values, dtype=np.float32) - mean) / std
    return np.clip(scaled, -MAX_STANDARD_SCORE, MAX_STANDARD_SCORE, out=scaled)


# -- metric lines ---------------------------------------------------------------------------------------------


def metric_line(values: dict[str, float | int]) -> str:
    """``epoch=7 train_loss=0.412300``: fixed-point, never scientific notation (Katib cannot read 1e-05)."""
    return " ".join(f"{k}={v}" if isinstance(v, int) else f"{k}={v:.6f}" for k, v in values.items())


@dataclass
class MetricLog:
    """Prints one metric line per epoch and keeps them as the artifact's history. `quiet`: keeps them only
    (the processes other than rank 0 under torchrun, so that Katib and KFP read one set of lines)."""

    history: list[dict] = field(default_factory=list)
    stream: object = None
    quiet: bool = False

    def log(self, values: dict[str, float | int]) -> None:
        self.history.append(dict(values))
        if not self.quiet:
            write_line(metric_line(values), self.stream or sys.stdout)


def write_line(line: str, stream) -> None:
    """One line of output. At a terminal it goes through tqdm, which clears the progress bar (progress(), on
    stderr: the same screen), writes the line and draws the bar again below it: they never share a line."""
    if sys.stderr.isatty() and getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        tqdm.write(line, file=stream)
        stream.flush()
    else:
        print(line, file=stream, flush=True)


def progress(iterable, total: int, desc: str):
    """A progress bar on stderr for a person at a terminal; nothing in logs, pipelines or tests."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)


# -- checkpoints ----------------------------------------------------------------------------------------------


def _digest(tensors: Iterable[torch.Tensor | None]) -> str:
    """A SHA-256 of the tensors' dtypes, shapes and values: how a checkpoint's fingerprint names a run's tensors
    (their shapes, or a sum, would take other data of the same shape, or the same rows in another order, for
    them)."""
    sha = hashlib.sha256()
    for tensor in tensors:
        if tensor is None:
            sha.update(b"none;")
            continue
        tensor = tensor.detach().cpu().contiguous()
        sha.update(f"{tensor.dtype}{list(tensor.shape)};".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return sha.hexdigest()


# RuntimeErrors of the device, not of a file: out of memory, and (torch 2.8 on) any other fault of a GPU
DEVICE_FAULTS = tuple(e for e in (torch.cuda.OutOfMemoryError, getattr(torch, "AcceleratorError", None)) if e)


class Checkpoints:
    """The training state after every finished epoch, in `directory`/`name`, so a killed run resumes where it
    was. Only the `writer` saves: under torchrun, the one process of those that hold the same state.

    The state is a dict of tensors and plain values, saved with torch.save and read back with
    weights_only=True: a checkpoint cannot run code. `fingerprint` (hyperparameters, the seed asked for) and
    `tensors` (the data, the starting weights) guard against resuming a different run from the same directory;
    the tensors by their digest, computed only where there is a directory.
    """

    def __init__(
        self,
        directory: str | os.PathLike | None,
        fingerprint: dict,
        *,
        tensors: Iterable[torch.Tensor | None] = (),
        name: str = CHECKPOINT,
        writer: bool = True,
    ):
        self.path = Path(directory) / name if directory else None
        self.fingerprint = {**fingerprint, "tensors": _digest(tensors)} if self.path else fingerprint
        self.writer = writer

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise InputError(
                f"cannot be read as a kfts checkpoint ({type(e).__name__}: damaged, or holding code, "
                "which is never run); delete it to start over",
                path=self.path,
            ) from None
        if not isinstance(state, dict):
            raise self._incomplete(f"it holds a {type(state).__name__}, not a training state")
        if state.get("fingerprint") != self.fingerprint:
            raise InputError(
                "belongs to a different training run (other data or hyperparameters); "
                "use another --checkpoint-dir or delete it",
                path=self.path,
            )
        return state

    def check(self, state: dict, kinds: Mapping[str, type | tuple[type, ...]], within: str = "") -> None:
        """Refuse a loaded state that lacks one of the keys of `kinds` or holds it as another type (one of a
        tuple's): a file edited, or saved by something else, under the name of this run's checkpoint. `within`:
        where `state` sits in the checkpoint ("best."), for the message."""
        for key, kind in kinds.items():
            kinds_ = kind if isinstance(kind, tuple) else (kind,)
            if not isinstance(state.get(key), kinds_) or isinstance(state.get(key), bool):
                names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds_)
                raise self._incomplete(f"its {within + key!r} is missing or not of type {names}")

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """Restoring the parts of a loaded state (optimizer, generators...), whose insides torch checks: what it
        refuses there is this checkpoint's damage, not a fault of kfts."""
        try:
            yield
        except DEVICE_FAULTS:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            raise self._incomplete(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None  # one line

    def _incomplete(self, why: str) -> InputError:
        return InputError(f"is not a complete kfts checkpoint ({why}); delete it to start over", path=self.path)

    def save(self, state: dict) -> None:
        if self.path is None or not self.writer:
            return
        from kfts.core.artifact import atomic_file

        with atomic_file(self.path, "wb") as f:
            torch.save({**state, "fingerprint": self.fingerprint}, f)
