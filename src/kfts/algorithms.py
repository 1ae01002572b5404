"""The algorithms kfts knows, by id, and loading any kfts model artifact into the right estimator."""

from __future__ import annotations

import os

from kfts import artifact
from kfts.errors import InputError
from kfts.inception_time import InceptionTime
from kfts.lstm_ad import LstmAD

ALGORITHMS = {cls.algorithm: cls for cls in (InceptionTime, LstmAD)}


def get(algorithm: str):
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        raise InputError(f"unknown algorithm {algorithm!r}: choose {' or '.join(ALGORITHMS)}") from None


def load_model(model_dir: str | os.PathLike, device: str = "auto"):
    """The estimator saved in `model_dir`, ready to predict (never unpickles: JSON + safetensors)."""
    manifest, tensors = artifact.load(model_dir)
    cls = get(manifest.get("algorithm"))
    try:
        return cls.from_artifact(manifest, tensors, device=device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a manifest or weights not as saved
        message = " ".join(f"{type(e).__name__}: {e}".split())
        raise InputError(f"is not a loadable {cls.algorithm} model ({message})", path=model_dir) from None
