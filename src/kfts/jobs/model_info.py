"""`kfts inspect MODEL_DIR`: what a model artifact holds, from its kfts-model.json alone (no torch, no weights
read): algorithm, hyperparameters, what it takes as input (series length and classes, or the number of
series), its metrics, a summary of its training history, what its training warned of, the artifact format
and the kfts that wrote it. The fields are checked first (kfts.jobs.validate.read_checked_manifest): an edited
one is refused naming the field, never shown half."""

from __future__ import annotations

import os
from pathlib import Path

from kfts.jobs.validate import read_checked_manifest

WEIGHTS = "weights.safetensors"  # kfts.core.artifact.WEIGHTS (that module imports torch)


def describe_model(model_dir: str | os.PathLike) -> list[str]:
    """The lines `kfts inspect` prints."""
    manifest = read_checked_manifest(model_dir)
    shape = manifest.get("input_shape", {})
    lines = [
        f"model:           {Path(model_dir)}",
        f"algorithm:       {manifest['algorithm']}",
        "hyperparameters: " + " ".join(f"{k}={v}" for k, v in manifest.get("hyperparameters", {}).items()),
    ]
    if "classes" in manifest:
        classes = manifest["classes"]
        lines.append(f"input:           series of {shape.get('length')} time steps, one per row")
        lines.append(f"classes:         {len(classes)}: {', '.join(map(str, classes))}")
    if "series" in shape:
        lines.append(f"input:           {shape['series']} series, one per column, one time step per row")
    if "threshold" in manifest:
        lines.append(
            f"threshold:       {_number(manifest['threshold'])} (log-likelihood; a step scored below it is flagged)"
        )
    metrics = manifest.get("metrics", {})
    lines.append("metrics:         " + (" ".join(f"{k}={_number(v)}" for k, v in metrics.items()) or "none"))
    lines.append(f"history:         {_history(manifest.get('history', []))}")
    lines += [f"warning:         {warning}" for warning in manifest.get("warnings", [])]  # a fit that failed
    weights = Path(model_dir) / WEIGHTS
    size = f"{weights.stat().st_size / 1e6:.2f} MB" if weights.is_file() else "MISSING"
    lines.append(
        f"format:          kfts model format {manifest.get('format_version')}, written by kfts "
        f"{manifest.get('kfts_version', '?')}; seed {manifest.get('seed')}; {WEIGHTS} {size}"
    )
    return lines


def _number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _history(history: list[dict]) -> str:
    """How many epochs (of how many members), and the first and last epoch's figures."""
    if not history:
        return "none"
    members = sorted({h["member"] for h in history if h.get("member") is not None})
    last = {k: v for k, v in history[-1].items() if k not in ("member",)}
    first = {k: v for k, v in history[0].items() if k not in ("member", "epoch")}
    epochs = max(h.get("epoch", 0) for h in history)
    text = f"{epochs} epochs" + (f" for each of {len(members)} members" if len(members) > 1 else "")
    text += "; first: " + " ".join(f"{k}={_number(v)}" for k, v in first.items())
    return text + "; last: " + " ".join(f"{k}={_number(v)}" for k, v in last.items())
