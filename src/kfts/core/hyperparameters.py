"""What every algorithm's hyperparameter dataclass (kfts/algorithms/<name>/params.py) shares: its check at the
edge. The dataclasses are kept apart from the estimators so that building the command line imports neither
torch nor kfp."""

from __future__ import annotations

import math
from dataclasses import Field, fields

from kfts.core.errors import InputError

FIELD_TYPES = {"int": int, "float": float, "str": str}  # a Params field's type (annotation text) -> its parser


def field_type(f: Field) -> str:
    """A Params field's type, as the text of its annotation: a Params module has `from __future__ import
    annotations` (docs/ALGORITHMS.md)."""
    assert isinstance(f.type, str), f"{f.name}: a Params module needs `from __future__ import annotations`"
    return f.type


def check_params(params) -> None:
    """Validate an estimator's Params dataclass at the edge, naming the flag a user would fix.

    Numbers must be finite and positive unless the field's metadata gives `bounds` (low, high): then
    low <= value < high, or low < value < high where `open` is set. Text must be one of the field's `choices`."""
    for f in fields(params):
        value, flag, meta = getattr(params, f.name), f"--{f.name.replace('_', '-')}", f.metadata
        if f.type == "float" and not math.isfinite(value):
            raise InputError(f"{flag} must be a finite number, not {value}")
        if "bounds" in meta:
            low, high = meta["bounds"]
            if not (low < value if meta.get("open") else low <= value) or not value < high:
                interval = f"({low}, {high})" if meta.get("open") else f"[{low}, {high})"
                raise InputError(f"{flag} must be in {interval}, not {value}")
        elif f.type in ("int", "float") and not value > 0:
            raise InputError(f"{flag} must be positive, not {value}")
        if "choices" in meta and value not in meta["choices"]:
            raise InputError(f"{flag} must be one of {', '.join(meta['choices'])}, not {value!r}")


def parse_param(params_class, name: str, text: str):
    """One hyperparameter's value from text, checked as `kfts train` checks its flag: the field's type, then the
    dataclass's own check (choices, bounds). The value is canonical: `str(value)` is what a command line gets,
    never the text as given (`int(" 16\\n")` is 16)."""
    kind = next(field_type(f) for f in fields(params_class) if f.name == name)
    try:
        value = FIELD_TYPES[kind](text)
    except ValueError:
        what = "an integer" if kind == "int" else "a number"
        raise InputError(f"--{name.replace('_', '-')}: {text!r} is not {what}") from None
    params_class(**{name: value})  # __post_init__ runs check_params on it
    return value
