"""The registry of algorithms, by id, and what every algorithm shares: training a model from files and loading
any kfts model artifact into the right estimator.

Everything that differs per algorithm lives in its folder here (kfts/algorithms/<name>/) behind the
interface of kfts.algorithms.base.Algorithm; the CLI, batch prediction, the predictor, the components and the
pipelines look an algorithm up here and never compare its id. Importing this module is cheap (no torch).

Besides the built-in ones, an installed package adds an algorithm through the entry point group
"kfts.algorithms" (name = its id, value = "module:Class" of its Algorithm subclass); see docs/ALGORITHMS.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from importlib.metadata import entry_points

from kfts.algorithms.base import Algorithm
from kfts.algorithms.inception_time import InceptionTimeAlgorithm
from kfts.algorithms.lstm_ad import LstmADAlgorithm
from kfts.errors import InputError

ENTRY_POINTS = "kfts.algorithms"

ALGORITHMS: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    """Make `algorithm` known to every part of kfts by its id."""
    ALGORITHMS[algorithm.id] = algorithm
    return algorithm


for _builtin in (InceptionTimeAlgorithm(), LstmADAlgorithm()):
    register(_builtin)
for _entry in entry_points(group=ENTRY_POINTS):
    register(_entry.load()())


def spec(algorithm: str) -> Algorithm:
    """The algorithm called `algorithm`, or an InputError listing the known ones."""
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        raise InputError(f"unknown algorithm {algorithm!r}: choose {' or '.join(ALGORITHMS)}") from None


def get(algorithm: str):
    """The estimator class of `algorithm` (imports torch)."""
    return spec(algorithm).estimator()


def of(model) -> Algorithm:
    """The algorithm of a fitted or loaded estimator."""
    return spec(model.algorithm)


def load_model(model_dir: str | os.PathLike, device: str = "auto"):
    """The estimator saved in `model_dir`, ready to predict (never unpickles: JSON + safetensors), checked before
    it is built (Algorithm.check_artifact)."""
    from kfts import artifact
    manifest = artifact.read_manifest(model_dir)
    chosen = spec(manifest.get("algorithm"))
    cls = chosen.estimator()
    try:
        chosen.check_artifact(model_dir, manifest)
        return cls.from_artifact(manifest, artifact.load_weights(model_dir), device=device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a manifest or weights not as saved
        message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
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
    from kfts import artifact, distributed
    artifact.check_output_directory(model_dir, artifact.FILES)  # before hours of training, not after
    if checkpoint_dir:
        artifact.check_output_directory(checkpoint_dir)
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
