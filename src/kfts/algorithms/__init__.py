"""The registry of algorithms, by id.

Everything that differs per algorithm lives in its folder here (kfts/algorithms/<name>/) behind the
interface of kfts.algorithms.base.Algorithm; the jobs (kfts.jobs: train, predict, evaluate, validate), the
predictor, the components and the pipelines look an algorithm up here and never compare its id. Importing this
module is cheap (no torch).

Besides the built-in ones, an installed package adds an algorithm through the entry point group
"kfts.algorithms" (name = its id, value = "module:Class" of its Algorithm subclass); see docs/ALGORITHMS.md.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from kfts.algorithms.base import Algorithm
from kfts.algorithms.inception_time import InceptionTimeAlgorithm
from kfts.algorithms.lstm_ad import LstmADAlgorithm
from kfts.core.errors import InputError

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
