"""The training job: hyperparameters from text, then read, fit and write the artifact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

from kfts.algorithms import spec
from kfts.core import artifact, distributed, storage
from kfts.core.errors import InputError
from kfts.core.hyperparameters import field_type
from kfts.core.training import SEEDS
from kfts.jobs.load import load_model


def make_params(algorithm: str, values: dict):
    """An algorithm's hyperparameters from names and values, which may come as text ("4", or "4.0" from
    kfp.local) as they do from pipeline parameters and Katib; missing names keep their defaults."""
    Params = spec(algorithm).Params
    known = {f.name: f for f in fields(Params)}
    unknown = sorted(set(values) - known.keys())
    if unknown:
        raise InputError(f"unknown {algorithm} hyperparameter {unknown[0]!r} (known: {', '.join(known)})")
    kinds: dict[str, Callable[[Any], int | float | str]] = {"int": lambda v: int(float(v)), "float": float, "str": str}
    try:
        return Params(**{name: kinds[field_type(known[name])](v) for name, v in values.items()})
    except ValueError as e:
        raise InputError(f"a {algorithm} hyperparameter has a value of the wrong type ({e})") from None


def train(
    algorithm: str,
    train_path,
    model_dir,
    *,
    valid_path=None,
    params=None,
    init_model=None,
    checkpoint_dir=None,
    seed: int | None = None,
    device: str = "auto",
):
    """The training job behind `kfts train` and the KFP train component: read the data, fit, write the
    artifact. `init_model` is a previous model directory to continue from. Under torchrun every process
    runs this (kfts.core.distributed) and rank 0 writes the artifact. Returns the fitted estimator."""
    artifact.check_output_directory(model_dir, artifact.FILES)  # before hours of training, not after
    if checkpoint_dir:
        artifact.check_output_directory(checkpoint_dir)
        storage.check_apart(checkpoint_dir, "--checkpoint-dir", {"--model-dir": model_dir})
    if seed is not None and not 0 <= seed < SEEDS:
        raise InputError(f"--seed must be in [0, {SEEDS}), not {seed}")
    chosen = spec(algorithm)
    cls = chosen.estimator()
    params = params or cls.Params()
    chosen.check_caps({"hyperparameters": asdict(params)})  # a model it could not load: refused before training
    previous = load_model(init_model, device=device) if init_model else None
    if previous is not None and previous.algorithm != algorithm:
        raise InputError(f"holds a model for {previous.algorithm}, not {algorithm}", path=init_model)
    estimator = cls(params, device=device, seed=seed)
    valid = chosen.read_training(valid_path) if valid_path else None
    try:
        estimator.fit(chosen.read_training(train_path), valid, init_model=previous, checkpoint_dir=checkpoint_dir)
        if distributed.world().main:  # under torchrun every process holds the model; one writes it
            estimator.save(model_dir)
    finally:
        distributed.stop()
    return estimator
