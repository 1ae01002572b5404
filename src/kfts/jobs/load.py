"""Loading any kfts model artifact into its algorithm's estimator."""

from __future__ import annotations

import os
from pathlib import Path

from kfts.algorithms import spec
from kfts.core import artifact
from kfts.core.errors import InputError


def load_model(model_dir: str | os.PathLike, device: str = "auto"):
    """The estimator saved in `model_dir`, ready to predict (never unpickles: JSON + safetensors), checked before
    it is built (Algorithm.check_artifact)."""
    manifest = artifact.read_manifest(model_dir)
    algorithm = manifest.get("algorithm")
    if not isinstance(algorithm, str):  # missing, or a list (which the registry would meet with a TypeError)
        raise InputError("has no algorithm: not a kfts model", path=Path(model_dir) / artifact.MANIFEST)
    chosen = spec(algorithm)
    cls = chosen.estimator()
    try:
        chosen.check_artifact(model_dir, manifest)
        return cls.from_artifact(manifest, artifact.load_weights(model_dir), device=device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a manifest or weights not as saved
        message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise InputError(f"is not a loadable {cls.algorithm} model ({message})", path=model_dir) from None
