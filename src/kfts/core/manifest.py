"""What the fields of a model's kfts-model.json must hold (docs/ARTIFACT.md), checked before anything reads them.

A manifest is a file that anyone may have edited: every field a model is built from, and every field
`kfts inspect` shows, is checked for its type, its shape and finite values here, once, so that a wrong one is an
InputError naming the file and the field, never an exception deep inside loading or prediction. Each algorithm
declares its fields (kfts.algorithms.base.Algorithm.manifest_fields) with the constructors below; FIELDS are
those every model has. No torch here: `kfts inspect` and the checks before every job read manifests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kfts import __version__
from kfts.core.errors import SHOWN, InputError, shown

MANIFEST = "kfts-model.json"
FORMAT_VERSION = 1  # of the model directory (docs/ARTIFACT.md): what this kfts writes, and the newest it reads


def read_manifest(model_dir: str | os.PathLike) -> dict:
    """A model's kfts-model.json as a JSON object, refused unless this kfts reads its format version (its other
    fields are its algorithm's to check: kfts.algorithms.base.Algorithm.check_manifest)."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"no {MANIFEST}: not a kfts model directory", path=model_dir)
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"is not valid JSON ({e})", path=path) from None
    except RecursionError:  # arrays nested deeper than Python's parser goes
        raise InputError("is not a kfts model: its JSON is nested too deeply", path=path) from None
    if not isinstance(manifest, dict):
        raise InputError(f"is not a kfts model: it holds a JSON {type(manifest).__name__}, not an object", path=path)
    version = manifest.get("format_version")
    if version is None:
        raise InputError("has no format_version: not a kfts model", path=path)
    if type(version) is not int or version < 1:
        raise InputError(f"format_version must be a whole number of at least 1, not {shown(version)}", path=path)
    if version > FORMAT_VERSION:
        raise InputError(
            f"model format version {version} is newer than this kfts ({__version__}) reads "
            f"(up to {FORMAT_VERSION}): upgrade kfts",
            path=path,
        )
    return manifest


@dataclass(frozen=True)
class Field:
    """What one field holds: `what(manifest)` says it for the message, `holds(value, manifest)` tells whether
    `value` is that. Both see the whole manifest, whose fields declared before this one are already checked (a
    length may be another field's value)."""

    what: Callable[[dict], str]
    holds: Callable[[Any, dict], bool]
    optional: bool = False


Size = Callable[[dict], int]  # a length, read off the (checked) manifest


def value(manifest: dict, field: str, default: Any = None) -> Any:
    """The value at `field` ("input_shape.series") of a manifest, or `default` where it is absent."""
    found: Any = manifest
    for key in field.split("."):
        if not isinstance(found, dict) or key not in found:
            return default
        found = found[key]
    return found


# The networks compute in float32: a number beyond its range is infinite there (a scaler's mean of 1e39 would
# make every prediction inf).
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _real(x) -> bool:
    """A finite number within float32's range (true and false are not numbers here)."""
    return type(x) in (int, float) and -FLOAT32_MAX <= x <= FLOAT32_MAX


def number(*, positive: bool = False, at_least: float | None = None, optional: bool = False) -> Field:
    """A finite number (positive, or at least `at_least`, when asked)."""
    what = "a finite positive number" if positive else "a finite number"
    if at_least is not None:
        what += f" of at least {at_least:g}"
    return Field(
        lambda m: what,
        lambda v, m: _real(v) and (not positive or v > 0) and (at_least is None or v >= at_least),
        optional,
    )


def integer(low: int, high: int | None = None, *, optional: bool = False) -> Field:
    """A whole number in low..high (true and false are not numbers here)."""
    what = f"a whole number of at least {low:,}" if high is None else f"a whole number from {low:,} to {high:,}"
    if low == high:
        what = f"{low}"
    return Field(lambda m: what, lambda v, m: type(v) is int and low <= v and (high is None or v <= high), optional)


def text(*, optional: bool = False) -> Field:
    return Field(lambda m: "a text", lambda v, m: isinstance(v, str), optional)


def texts(*, distinct: bool = False, at_least: int = 0, optional: bool = False) -> Field:
    """A list of texts."""
    what = f"a list of {'distinct ' if distinct else ''}texts" + (f", at least {at_least}" if at_least else "")
    return Field(
        lambda m: what,
        lambda v, m: (
            isinstance(v, list)
            and len(v) >= at_least
            and all(isinstance(t, str) for t in v)
            and (not distinct or len(set(v)) == len(v))
        ),
        optional,
    )


def numbers(size: Size, *, positive: bool = False) -> Field:
    """A list of `size(manifest)` finite (positive) numbers."""
    return Field(
        lambda m: f"a list of {size(m):,} finite {'positive ' if positive else ''}numbers",
        lambda v, m: isinstance(v, list) and len(v) == size(m) and all(_real(x) and (not positive or x > 0) for x in v),
    )


def covariance(size: Size) -> Field:
    """A symmetric positive definite matrix of `size(manifest)` rows of as many finite numbers."""

    def holds(v, m) -> bool:
        n = size(m)
        if not (isinstance(v, list) and len(v) == n and all(isinstance(r, list) and len(r) == n for r in v)):
            return False
        if not all(_real(x) for r in v for x in r):
            return False
        matrix = np.array(v, dtype=np.float64)
        if not np.allclose(matrix, matrix.T):
            return False
        try:
            np.linalg.cholesky(matrix)  # what scoring factors it with; fails unless positive definite
        except np.linalg.LinAlgError:
            return False
        return True

    return Field(lambda m: f"a symmetric positive definite {size(m):,} x {size(m):,} matrix of finite numbers", holds)


def _figure(x) -> bool:
    """A metric's value: a number (NaN where training diverged)."""
    return type(x) in (int, float)


def figures(*, optional: bool = False) -> Field:
    """An object of numbers by name (metrics)."""
    return Field(
        lambda m: "an object of numbers",
        lambda v, m: isinstance(v, dict) and all(_figure(x) for x in v.values()),
        optional,
    )


def figures_list(*, optional: bool = False) -> Field:
    """A list of objects of numbers (the history: one per epoch)."""
    return Field(
        lambda m: "a list of objects of numbers",
        lambda v, m: isinstance(v, list) and all(isinstance(h, dict) and all(map(_figure, h.values())) for h in v),
        optional,
    )


def obj(*, optional: bool = False) -> Field:
    return Field(lambda m: "an object", lambda v, m: isinstance(v, dict), optional)


# the fields every model has (those `kfts inspect` shows), beside the algorithm's own
FIELDS: dict[str, Field] = {
    "kfts_version": text(optional=True),
    "hyperparameters": obj(),
    "input_shape": obj(),
    "metrics": figures(optional=True),
    "history": figures_list(optional=True),
    "warnings": texts(optional=True),
    "seed": Field(lambda m: "a whole number or null", lambda v, m: v is None or type(v) is int, optional=True),
}


def check(manifest: dict, fields: dict[str, Field], where: str | os.PathLike) -> None:
    """Refuse the first of `fields` (in their order) that `manifest` lacks or holds wrongly: an InputError naming
    `where` (the manifest's path) and the field."""
    for name, field in fields.items():
        found = value(manifest, name, _ABSENT)
        if found is _ABSENT:
            if field.optional:
                continue
            raise InputError(f"has no {name}: not a complete kfts model", path=where)
        if not field.holds(found, manifest):
            raise InputError(f"{name} must be {field.what(manifest)}, not {as_written(found)}", path=where)


_ABSENT = object()


def as_written(found) -> str:
    """A field's value as the file spells it (null, true, NaN), cut to SHOWN characters as errors.shown() cuts."""
    if isinstance(found, str):
        return shown(found)
    text = json.dumps(found)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text):,} characters)"
