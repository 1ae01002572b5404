"""The algorithms kfts knows, by id, and loading any kfts model artifact into the right estimator."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, fields

from kfts.errors import InputError
from kfts.hyperparameters import InceptionTimeParams, LstmADParams


@dataclass(frozen=True)
class Algorithm:
    """What the command line needs to know of an algorithm before any work: cheap to import (no torch)."""

    id: str
    summary: str
    Params: type
    estimator_path: str  # "module:Class" of the estimator, imported on first use (it imports torch)

    def estimator(self):
        module, name = self.estimator_path.split(":")
        return getattr(importlib.import_module(module), name)


ALGORITHMS = {a.id: a for a in (
    Algorithm("inception-time", "InceptionTime time-series classifier (an ensemble of Inception CNNs)",
              InceptionTimeParams, "kfts.inception_time:InceptionTime"),
    Algorithm("lstm-ad", "LSTM-AD anomaly detector (stacked LSTM, errors scored under a multivariate Normal)",
              LstmADParams, "kfts.lstm_ad:LstmAD"),
)}


def spec(algorithm: str) -> Algorithm:
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        raise InputError(f"unknown algorithm {algorithm!r}: choose {' or '.join(ALGORITHMS)}") from None


def get(algorithm: str):
    """The estimator class of `algorithm` (imports torch)."""
    return spec(algorithm).estimator()


def load_model(model_dir: str | os.PathLike, device: str = "auto"):
    """The estimator saved in `model_dir`, ready to predict (never unpickles: JSON + safetensors)."""
    from kfts import artifact
    manifest, tensors = artifact.load(model_dir)
    cls = get(manifest.get("algorithm"))
    try:
        return cls.from_artifact(manifest, tensors, device=device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a manifest or weights not as saved
        message = " ".join(f"{type(e).__name__}: {e}".split())
        raise InputError(f"is not a loadable {cls.algorithm} model ({message})", path=model_dir) from None


def make_params(algorithm: str, values: dict):
    """An algorithm's hyperparameters from names and values, which may come as text ("4", or "4.0" from
    kfp.local) as they do from pipeline parameters and Katib; missing names keep their defaults."""
    Params = spec(algorithm).Params
    known = {f.name: f for f in fields(Params)}
    unknown = sorted(set(values) - known.keys())
    if unknown:
        raise InputError(f"unknown {algorithm} hyperparameter {unknown[0]!r} (known: {', '.join(known)})")
    kinds = {"int": lambda v: int(float(v)), "float": float, "str": str}
    try:
        return Params(**{name: kinds[known[name].type](v) for name, v in values.items()})
    except ValueError as e:
        raise InputError(f"a {algorithm} hyperparameter has a value of the wrong type ({e})") from None


def train(algorithm: str, train_path, model_dir, *, valid_path=None, params=None, init_model=None,
          checkpoint_dir=None, seed: int | None = None, device: str = "auto"):
    """The training job behind `kfts train` and the KFP train component: read the data, fit, write the
    artifact. `init_model` is a previous model directory to continue from. Under torchrun every process
    runs this (kfts.distributed) and rank 0 writes the artifact. Returns the fitted estimator."""
    from kfts import distributed
    cls = get(algorithm)
    previous = load_model(init_model, device=device) if init_model else None
    if previous is not None and previous.algorithm != algorithm:
        raise InputError(f"holds a model for {previous.algorithm}, not {algorithm}", path=init_model)
    estimator = cls(params or cls.Params(), device=device, seed=seed)
    valid = cls.read_training(valid_path) if valid_path else None
    try:
        estimator.fit(cls.read_training(train_path), valid, init_model=previous, checkpoint_dir=checkpoint_dir)
        if distributed.world().main:  # under torchrun every process holds the model; one writes it
            estimator.save(model_dir)
    finally:
        distributed.stop()
    return estimator
