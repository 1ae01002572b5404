"""The model artifact (docs/ARTIFACT.md): a directory KFP stores as a Model and KServe mounts at /mnt/models.

    kfts-model.json      format version, algorithm, hyperparameters, input shape, labels, scaler, metrics, history
    weights.safetensors  the network's tensors

Loading reads JSON and safetensors only, so a model directory can never run code on the machine that loads it.
Directories and files are written atomically: built beside the target, then renamed into place, so a killed
process never leaves something that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file

from kfts import __version__
from kfts.errors import InputError

FORMAT_VERSION = 1
MANIFEST = "kfts-model.json"
WEIGHTS = "weights.safetensors"


def save(model_dir: str | os.PathLike, manifest: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write a complete artifact directory atomically (replacing an existing one)."""
    manifest = {"format_version": FORMAT_VERSION, "kfts_version": __version__, **manifest}
    with atomic_directory(model_dir) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / WEIGHTS)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def load(model_dir: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read an artifact: (manifest, tensors on the CPU). Refuses unknown format versions."""
    manifest = read_manifest(model_dir)
    weights = Path(model_dir) / WEIGHTS
    if not weights.is_file():
        raise InputError(f"no {WEIGHTS}: not a complete kfts model directory", path=model_dir)
    try:
        return manifest, load_file(weights)
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise InputError(f"{WEIGHTS} cannot be read ({e})", path=model_dir) from None


def read_manifest(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"no {MANIFEST}: not a kfts model directory", path=model_dir)
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"is not valid JSON ({e})", path=path) from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int):
        raise InputError("has no format_version: not a kfts model", path=path)
    if version > FORMAT_VERSION:
        raise InputError(f"model format version {version} is newer than this kfts ({__version__}) reads "
                         f"(up to {FORMAT_VERSION}): upgrade kfts", path=path)
    return manifest


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        _readable(tmp, 0o777)
        for child in tmp.rglob("*"):
            _readable(child, 0o777 if child.is_dir() else 0o666)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file beside `target` for writing; it is renamed onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as f:
            yield f
        _readable(Path(tmp), 0o666)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _readable(path: Path, mode: int) -> None:
    """mkdtemp/mkstemp create owner-only entries; give them the usual umask-based modes, so that a model
    written by one user (a pipeline step) can be read by another (the predictor's non-root user)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(mode & ~umask)
