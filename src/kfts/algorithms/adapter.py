"""What the predictor (kfts.serving.model) asks of a loaded model: one Adapter subclass per algorithm, in its
folder (kfts/algorithms/<name>/serving.py). KServe decodes the protocols and kfts.serving.decoding turns a
request into a float32 [rows, columns] array; the adapter says what the rows must look like, runs the model on
them and names the answer's tensors."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from kfts.core.errors import InputError

TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def boolean(value) -> bool:
    """An on/off request option, as JSON (true, false) or as text ("true", "1", "yes", "on" and their opposites);
    anything else is the client's mistake, not a quiet "off"."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in TRUE | FALSE:
        raise InputError(f"{value!r} is neither on nor off: send true or false (or 1/0, yes/no, on/off)")
    return text in TRUE


class Adapter:
    """A loaded model as the predictor serves it.

    batchable: rows are independent, so the rows of concurrent requests go through one compute() call
    together (dynamic batching); compute() then gets no options, and answers one row per input row."""

    batchable = False

    def __init__(self, algorithm, model):
        self.algorithm, self.model = algorithm, model

    def request_options(self) -> dict[str, Callable]:
        """Options a request may set, name -> parser: a V2 request parameter NAME, or the header kfts-NAME
        (underscores as dashes) on any protocol. By default the algorithm's on/off predict_options."""
        return {name: boolean for name in self.algorithm.predict_options}

    def input_types(self) -> list[dict]:
        raise NotImplementedError

    def output_types(self) -> list[dict]:
        raise NotImplementedError

    @property
    def univariate(self) -> bool:
        """One value per row: a JSON row may then be a bare number instead of a list of one."""
        return False

    def check(self, values: np.ndarray, where: str) -> None:
        """The model's shape rules for a request's rows, raised as an InputError (a 400) naming `where`, so
        that one bad request cannot spoil a batch."""

    def memory(self, rows: int, columns: int) -> int:
        """Bytes that a request of `rows` x `columns` values may take in its model call and its answer, at most
        (the predictor's memory budget, kfts.serving.admission): by default 64 bytes per value."""
        return 64 * rows * columns

    def compute(self, values: np.ndarray, options: dict):
        """The model call (on the predictor's worker thread)."""
        raise NotImplementedError

    def outputs(self, computed, options: dict) -> dict[str, np.ndarray]:
        """The answer's tensors by name, from compute()'s result: numbers as float32, text as object arrays."""
        raise NotImplementedError

    def v1(self, computed, options: dict) -> Iterator[list]:
        """The V1 `predictions` from compute()'s result, a list of them per chunk of rows (chunks()), which the
        predictor writes as JSON before it asks for the next. By default one object per row of the outputs
        (NaN: JSON's null)."""
        arrays = self.outputs(computed, options)
        names = [o["name"] for o in self.output_types()]
        for rows in chunks(len(arrays[names[0]])):
            columns = [arrays[name][rows].tolist() for name in names]
            yield [dict(zip(names, values)) for values in zip(*columns)]

    def warm_up(self, max_batch_size: int) -> None:
        """Run the model once at the sizes it will see, so that the first request is not slow."""


def chunks(n: int, size: int = 4096) -> Iterator[slice]:
    """Slices of `size` rows that cover `n` rows."""
    return (slice(start, start + size) for start in range(0, n, size))
