"""The model artifact (docs/ARTIFACT.md): a directory KFP stores as a Model and KServe mounts at /mnt/models.

    kfts-model.json      format version, algorithm, hyperparameters, input shape, labels, scaler, metrics, history
    weights.safetensors  the network's tensors

Loading reads JSON and safetensors only, so a model directory can never run code on the machine that loads it.
Nor can it exhaust the machine's memory: the weights file's header (names, dtypes, shapes) is read first and
compared with the network the manifest describes, built on torch's meta device (shapes, no memory), before
anything is allocated (kfts.jobs.load.load_model); the network then takes no more memory than the file holds.
Directories and files are written atomically: built beside the target, then renamed into place, so a killed
process never leaves something that looks complete. An output directory is only ever replaced by one of its
kind: a directory holding anything else is refused, never emptied.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kfts import __version__
from kfts.core import outputs
from kfts.core.errors import InputError, shown
from kfts.core.manifest import FORMAT_VERSION, MANIFEST
from kfts.core.manifest import read_manifest as read_manifest  # kept here too: the model directory's one API

WEIGHTS = "weights.safetensors"
FILES = (MANIFEST, WEIGHTS)  # all that a model directory holds
# Bytes of the weights file's JSON header read at most: about 100 per tensor, and a model kfts loads has a few
# thousand tensors at most (safetensors itself would parse up to 100 MB).
MAX_HEADER = 1 << 20
# safetensors' names of the dtypes kfts networks hold
DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def save(model_dir: str | os.PathLike, manifest: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write a complete artifact directory atomically (replacing an existing one)."""
    manifest = {"format_version": FORMAT_VERSION, "kfts_version": __version__, **manifest}
    with atomic_directory(model_dir, FILES) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / WEIGHTS)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def weights_header(model_dir: str | os.PathLike) -> dict[str, tuple[str, list[int]]]:
    """The weights file's tensors, name -> (dtype, shape), from its header alone (no tensor is read)."""
    weights = _weights(model_dir)
    with _unreadable_weights(model_dir):
        with open(weights, "rb") as f:
            size = struct.unpack("<Q", f.read(8).ljust(8, b"\0"))[0]  # the header's length comes first
        if size > MAX_HEADER:
            raise InputError(
                f"{WEIGHTS} cannot be read (its header claims {size:,} bytes, more than the {MAX_HEADER:,} kfts reads)",
                path=model_dir,
            )
        with safe_open(weights, framework="pt") as f:  # checks that the file holds every tensor the header lists
            return {name: (f.get_slice(name).get_dtype(), f.get_slice(name).get_shape()) for name in f.keys()}


def check_weights(
    model_dir: str | os.PathLike, header: dict[str, tuple[str, list[int]]], expected: dict[str, torch.Tensor]
) -> None:
    """Refuse weights (weights_header()) that are not the tensors `expected` of the network the manifest
    describes (its state dict, built on the meta device): the first difference, by name."""

    def refuse(problem: str):
        raise InputError(
            f"{WEIGHTS} {problem}: it does not go with the hyperparameters and input shape in {MANIFEST}",
            path=model_dir,
        )

    for name, tensor in expected.items():
        if name not in header:
            refuse(f"has no tensor {name!r}")
        dtype, shape = header[name]
        if list(shape) != list(tensor.shape):
            refuse(f"holds {name!r} of shape {list(shape)} where {list(tensor.shape)} is expected")
        if dtype != DTYPES.get(tensor.dtype):
            refuse(f"holds {name!r} as {dtype} where {DTYPES.get(tensor.dtype, tensor.dtype)} is expected")
    unknown = sorted(header.keys() - expected.keys())
    if unknown:
        refuse(f"holds a tensor {shown(unknown[0])} that the network has not")


def load_weights(model_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights file's tensors, on the CPU; refused if one holds NaN or an infinity (no network kfts trains
    does: such weights would predict NaN for every row)."""
    weights = _weights(model_dir)
    with _unreadable_weights(model_dir):
        tensors = load_file(weights)
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise InputError(f"{WEIGHTS} holds NaN or infinite values in {shown(name)}", path=model_dir)
    return tensors


def _weights(model_dir) -> Path:
    weights = Path(model_dir) / WEIGHTS
    if not weights.is_file():
        raise InputError(f"no {WEIGHTS}: not a complete kfts model directory", path=model_dir)
    return weights


@contextlib.contextmanager
def _unreadable_weights(model_dir) -> Iterator[None]:
    try:
        yield
    except InputError:
        raise
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise InputError(f"{WEIGHTS} cannot be read ({str(e)[:200]})", path=model_dir) from None


def check_output_directory(target: str | os.PathLike, files: Collection[str] | None = None) -> Path:
    """Refuse, before any work is done, an output directory that cannot be written, or whose replacement
    would delete what someone keeps there; returns its real path (a symlink's target is written, the link
    kept). files: the names the output consists of: an existing directory may hold only these (it is a
    previous output of the same kind, which the new one replaces); None: kfts only adds files to it."""
    if not os.fspath(target):
        raise InputError("the output directory is an empty path: give a directory")
    real = Path(os.path.realpath(target))
    if real.exists() and not real.is_dir():
        raise InputError("is a file, not a directory: give a directory for this output", path=target)
    if real.is_dir() and files is not None:
        foreign = sorted(p.name for p in real.iterdir() if p.name not in files)
        if foreign:
            more = ", ..." if len(foreign) > 3 else ""
            raise InputError(
                f"holds {', '.join(foreign[:3])}{more}, which writing this output would delete (it "
                f"replaces the whole directory): give a new or empty directory",
                path=target,
            )
    _check_can_create(real if files is None else real.parent, target)
    return real


def _check_can_create(directory: Path, target: str | os.PathLike) -> None:
    """`directory` exists and is writable, or can be made: its nearest existing ancestor is a writable
    directory."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot be created: {existing} is a file, not a directory", path=target)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot be written: no permission to write in {existing}", path=target)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, files: Collection[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; on success it replaces `target` in one rename.
    files: what the output consists of (see check_output_directory)."""
    shown, target = target, check_output_directory(target, files)
    with _refusal_reported(shown):
        target.parent.mkdir(parents=True, exist_ok=True)
        outputs.remove_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=outputs.scratch_prefix(target), suffix=outputs.PARTIAL, dir=target.parent))
    try:
        yield tmp
        _readable(tmp, 0o777)
        for child in tmp.rglob("*"):
            _readable(child, 0o777 if child.is_dir() else 0o666)
            outputs.synced(child)
        outputs.synced(tmp)
        if target.exists():
            check_output_directory(shown, files)  # again: files may have been put there while this ran
            old = target.with_name(f"{outputs.scratch_prefix(target)}old{outputs.PARTIAL}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
        outputs.synced(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file beside `target` for writing; it is renamed onto `target` only on success.
    Through a symlink the file it points to is replaced; a device or a pipe (/dev/stdout) is written
    straight to, there being nothing to replace."""
    encoding, newline = (None, None) if "b" in mode else ("utf-8", "")
    shown = os.fspath(target)
    if not shown:
        raise InputError("the output file is an empty path: give a file path")
    if os.path.exists(target) and not os.path.isfile(target):
        if os.path.isdir(target):
            raise InputError("is a directory: give a file path for this output", path=shown)
        with open(target, mode, encoding=encoding, newline=newline) as f:
            yield f
        return
    real = Path(os.path.realpath(target))
    _check_can_create(real.parent, shown)
    with _refusal_reported(shown):
        real.parent.mkdir(parents=True, exist_ok=True)
        outputs.remove_stale(real)
        fd, tmp = tempfile.mkstemp(prefix=outputs.scratch_prefix(real), suffix=outputs.PARTIAL, dir=real.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _readable(Path(tmp), 0o666)
        os.replace(tmp, real)
        outputs.synced(real.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _refusal_reported(output: str | os.PathLike) -> Iterator[None]:
    """The OS refusing to create a temporary output (a read-only file system, /proc) is the user's output path
    that cannot be written: an InputError naming it."""
    try:
        yield
    except OSError as e:
        raise InputError(f"cannot be written ({e.strerror or e})", path=output) from None


def _readable(path: Path, mode: int) -> None:
    """mkdtemp/mkstemp create owner-only entries; give them the usual umask-based modes, so that a model
    written by one user (a pipeline step) can be read by another (the predictor's non-root user)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(mode & ~umask)
