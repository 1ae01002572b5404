"""Errors that are the user's to fix: reported as one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import os

SHOWN = 40  # characters of a value that an error message quotes: a value may be megabytes long


def shown(value) -> str:
    """`value` as an error message quotes it: repr() (a whole number with thousands separators), cut to SHOWN
    characters, then its length said."""
    if isinstance(value, str):
        return repr(value) if len(value) <= SHOWN else f"{value[:SHOWN]!r}... ({len(value):,} characters)"
    text = f"{value:,}" if type(value) is int else repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text):,} characters)"


class InputError(Exception):
    """Bad input (a CSV fault, a wrong flag value, a missing file), located as precisely as known.

    str(error) reads like ``train.csv: row 17, column 4: 'abc' is not a number``.
    """

    def __init__(
        self, message: str, *, path: str | os.PathLike | None = None, row: int | None = None, column: int | None = None
    ):
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.row = row
        self.column = column

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        parts = [p for p in (self.path, ", ".join(where)) if p]
        return ": ".join(parts + [self.message])


class NotFittedError(ValueError, AttributeError):
    """An estimator was asked to predict or save before fit() (or loading): a programming mistake, whose
    message says what to call (scikit-learn's exception of the same name subclasses the same two)."""


def check_fitted(estimator, attribute: str = "network") -> None:
    """Raise NotFittedError unless `estimator` has its fitted `attribute` (set by fit() or from_artifact())."""
    if getattr(estimator, attribute, None) is None:
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted: call fit(train) first, or load a "
            "saved one with kfts.jobs.load.load_model(model_dir)"
        )
